"""Behaviour every RelayStore must have (run against each back end via `store`).

Time is passed in explicitly, so expiry and lease timeouts are tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from cloud.relay.store import (
    DuplicateError,
    EnrollmentError,
    LeaseLost,
    NotFoundError,
    PortalKey,
    RelayStore,
    RequestState,
)
from cloud.relay.store_sqlite import SQLiteStore
from wire.permits import PermitDecision

T0 = 1_700_000_000.0
LEASE = 30.0


def _tenant_with_agents(
    store: RelayStore, *agents: str, tenant: str = "t1", group: str = "g"
) -> None:
    store.add_tenant(tenant, f"hash-{tenant}", T0)
    for n, agent_id in enumerate(agents):
        code = f"code-{tenant}-{agent_id}"
        store.add_enrollment_code(code, tenant, group, T0 + 600, T0)
        store.enroll(code, agent_id, f"name-{n}", {"sign_key": "k", "n": n}, "k", now=T0)


def test_tenants_and_tokens(store: RelayStore) -> None:
    store.add_tenant("t1", "h1", T0)
    assert store.tenant_for_token("h1") == "t1"
    assert store.tenant_for_token("nope") is None
    with pytest.raises(DuplicateError):
        store.add_tenant("t1", "h2", T0)


def test_enrollment_code_is_single_use_and_expires(store: RelayStore) -> None:
    store.add_tenant("t1", "h1", T0)
    store.add_enrollment_code("c1", "t1", "g", T0 + 60, T0)
    store.add_enrollment_code("c2", "t1", "g", T0 + 60, T0)
    agent = store.enroll("c1", "a1", "dc1", {"sign_key": "k", "hpke": "x"}, "k", now=T0 + 1)
    assert (agent.tenant, agent.agent_group, agent.removed) == ("t1", "g", False)
    assert store.get_agent("a1") == agent
    with pytest.raises(EnrollmentError) as info:
        store.enroll("c1", "a2", "dc2", {"sign_key": "k"}, "k", now=T0 + 2)
    assert info.value.reason == "enrollment_code_used"
    with pytest.raises(EnrollmentError) as info:
        store.enroll("c2", "a3", "dc3", {"sign_key": "k"}, "k", now=T0 + 60)
    assert info.value.reason == "enrollment_code_expired"
    with pytest.raises(EnrollmentError) as info:
        store.enroll("c9", "a4", "dc4", {"sign_key": "k"}, "k", now=T0)
    assert info.value.reason == "invalid_enrollment_code"
    assert store.get_agent("a2") is None and store.get_agent("a3") is None
    with pytest.raises(NotFoundError):
        store.add_enrollment_code("c3", "no-such-tenant", "g", T0 + 60, T0)


def test_agents_listing_presence_and_removal(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    _tenant_with_agents(store, "b1", tenant="t2")
    assert [a.agent_id for a in store.list_agents("t1", "g")] == ["a1", "a2"]
    assert store.list_agents("t1", "other") == []
    assert store.list_agents("t1", "g")[1].public_keys == {"sign_key": "k", "n": 1}
    assert store.any_agent_online("t1", "g", since=T0)
    assert not store.any_agent_online("t1", "g", since=T0 + 1)
    store.touch_agent("a2", T0 + 50, b'{"version":"1"}')
    assert store.any_agent_online("t1", "g", since=T0 + 40)
    store.remove_agent("a2", T0 + 51)
    assert not store.any_agent_online("t1", "g", since=T0 + 40)
    removed = store.get_agent("a2")
    assert removed is not None and removed.removed
    assert [a.agent_id for a in store.list_agents("t1", "g")] == ["a1"]
    with pytest.raises(NotFoundError):
        store.remove_agent("zz", T0)


def test_portal_keys(store: RelayStore) -> None:
    store.add_tenant("t1", "h1", T0)
    store.add_portal_key("t1", PortalKey("old", "K1", None, T0 + 10), T0)
    store.add_portal_key("t1", PortalKey("new", "K2", T0 + 5, None), T0)
    with pytest.raises(DuplicateError):
        store.add_portal_key("t1", PortalKey("new", "K3", None, None), T0)
    with pytest.raises(NotFoundError):
        store.add_portal_key("t9", PortalKey("x", "K", None, None), T0)
    assert {k.kid for k in store.portal_keys("t1", T0)} == {"old", "new"}
    assert [k.kid for k in store.portal_keys("t1", T0 + 10)] == ["new"]  # future keys included
    assert store.portal_keys("t2", T0) == []


def test_portal_key_window_update_retires_the_old_key(store: RelayStore) -> None:
    store.add_tenant("t1", "h1", T0)
    store.add_portal_key("t1", PortalKey("old", "K1", None, None), T0)
    store.add_portal_key(
        "t1", PortalKey("old", "K1", None, T0 + 10), T0 + 1
    )  # same key: new window
    assert [k.not_after for k in store.portal_keys("t1", T0)] == [T0 + 10]
    assert store.portal_keys("t1", T0 + 11) == []


def test_duplicate_request_id(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1")
    store.add_request("t1", "r1", "g", T0 + 120, b"{}", now=T0)
    with pytest.raises(DuplicateError):
        store.add_request("t1", "r1", "g", T0 + 120, b"{}", now=T0)
    store.add_tenant("t2", "h2", T0)
    store.add_request("t2", "r1", "g", T0 + 120, b"{}", now=T0)  # ids are per tenant


def test_lease_is_fifo_scoped_and_skips_expired(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1")
    store.add_request("t1", "expiring", "g", T0 + 5, b"E", now=T0)
    store.add_request("t1", "r1", "g", T0 + 120, b"one", now=T0 + 1)
    store.add_request("t1", "r2", "g", T0 + 120, b"two", now=T0 + 2)
    store.add_request("t1", "other-group", "h", T0 + 120, b"x", now=T0)
    store.add_request("t2", "other-tenant", "g", T0 + 120, b"x", now=T0)
    # "expiring" has exp == now: not leasable
    first = store.lease("t1", "g", "a1", "L1", now=T0 + 5, lease_timeout=LEASE)
    assert first is not None
    assert (first.request_id, first.envelope, first.expires_at) == ("r1", b"one", T0 + 5 + LEASE)
    second = store.lease("t1", "g", "a1", "L2", now=T0 + 5, lease_timeout=LEASE)
    assert second is not None and second.request_id == "r2"
    assert store.lease("t1", "g", "a1", "L3", now=T0 + 5, lease_timeout=LEASE) is None
    status = store.request_status("t1", "expiring", T0 + 5)
    assert status is not None and status.state is RequestState.EXPIRED


def test_lease_timeout_and_renew(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    lease = store.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=LEASE)
    assert lease is not None
    assert store.lease("t1", "g", "a2", "L2", now=T0 + LEASE - 1, lease_timeout=LEASE) is None
    assert store.renew("L1", "a1", T0 + 20, LEASE) == T0 + 20 + LEASE
    renewed = store.lease("t1", "g", "a2", "L2", now=T0 + LEASE + 1, lease_timeout=LEASE)
    assert renewed is None
    with pytest.raises(LeaseLost):
        store.renew("L1", "a2", T0 + 21, LEASE)  # not a2's lease
    taken = store.lease("t1", "g", "a2", "L2", now=T0 + 20 + LEASE, lease_timeout=LEASE)
    assert taken is not None and taken.request_id == "r1"
    with pytest.raises(LeaseLost):
        store.renew("L1", "a1", T0 + 51, LEASE)
    with pytest.raises(LeaseLost):
        store.complete("L1", "r1", "a1", b"late", T0 + 51)
    assert store.complete("L2", "r1", "a2", b"ok", T0 + 52) is True


def test_release_requeues_at_once(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    assert store.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=LEASE) is not None
    with pytest.raises(LeaseLost):
        store.release("L1", "a2")
    assert store.release("L1", "a1") == "r1"
    with pytest.raises(LeaseLost):
        store.release("L1", "a1")
    again = store.lease("t1", "g", "a2", "L2", now=T0 + 1, lease_timeout=LEASE)
    assert again is not None and again.request_id == "r1"


def test_complete_and_status(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 60, b"x", now=T0)
    status = store.request_status("t1", "r1", T0)
    assert status is not None and status.state is RequestState.QUEUED
    assert store.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=LEASE) is not None
    status = store.request_status("t1", "r1", T0 + 1)
    assert status is not None and status.state is RequestState.LEASED
    status = store.request_status("t1", "r1", T0 + LEASE + 1)  # lease timed out: back to queued
    assert status is not None and status.state is RequestState.QUEUED
    with pytest.raises(LeaseLost):
        store.complete("L1", "r1", "a2", b"r", T0 + 2)
    with pytest.raises(LeaseLost):
        store.complete("L1", "r-other", "a1", b"r", T0 + 2)
    assert store.complete("L1", "r1", "a1", b"result", T0 + 2) is True
    assert store.complete("L1", "r1", "a1", b"result", T0 + 3) is False  # idempotent
    with pytest.raises(LeaseLost):
        store.complete("L1", "r1", "a2", b"result", T0 + 3)
    with pytest.raises(LeaseLost):
        store.renew("L1", "a1", T0 + 3, LEASE)
    status = store.request_status("t1", "r1", T0 + 999)  # results outlive exp
    assert status is not None and (status.state, status.result) == (RequestState.DONE, b"result")
    assert store.request_status("t2", "r1", T0) is None  # other tenant
    assert store.request_tenant_group("L1") == ("t1", "g", "r1")


def test_statuses_of_several_requests_in_one_read(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1")
    _tenant_with_agents(store, "b1", tenant="t2")
    store.add_request("t1", "done", "g", T0 + 60, b"x", now=T0)
    store.add_request("t1", "leased", "g", T0 + 60, b"x", now=T0 + 1)
    store.add_request("t1", "queued", "g", T0 + 60, b"x", now=T0 + 2)
    store.add_request("t1", "expired", "g", T0 + 3, b"x", now=T0 + 2)
    store.add_request("t2", "theirs", "g", T0 + 60, b"x", now=T0)
    assert store.lease("t1", "g", "a1", "L1", now=T0 + 3, lease_timeout=LEASE) is not None
    assert store.lease("t1", "g", "a1", "L2", now=T0 + 3, lease_timeout=LEASE) is not None
    assert store.complete("L1", "done", "a1", b"answer", T0 + 4) is True
    ids = ["queued", "theirs", "done", "nope", "leased", "expired", "done"]
    statuses = store.request_statuses("t1", ids, T0 + 5)
    # The same answers as one request_status per id, in the order asked.
    assert statuses == [store.request_status("t1", i, T0 + 5) for i in ids]
    assert [s.state if s else None for s in statuses] == [
        RequestState.QUEUED, None, RequestState.DONE, None, RequestState.LEASED,
        RequestState.EXPIRED, RequestState.DONE,
    ]
    assert statuses[2] is not None and statuses[2].result == b"answer"
    assert store.request_statuses("t1", [], T0) == []


def test_removing_an_agent_requeues_its_leases(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    assert store.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=LEASE) is not None
    store.remove_agent("a1", T0 + 1)
    again = store.lease("t1", "g", "a2", "L2", now=T0 + 1, lease_timeout=LEASE)
    assert again is not None and again.request_id == "r1"


def test_prune(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1")
    store.add_request("t1", "done", "g", T0 + 60, b"x", now=T0)
    store.add_request("t1", "expired", "g", T0 + 60, b"x", now=T0)
    store.add_request("t1", "fresh", "g", T0 + 5000, b"x", now=T0)
    lease = store.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=LEASE)
    assert lease is not None and lease.request_id == "done"
    store.complete("L1", "done", "a1", b"r", T0 + 1)
    assert store.prune(T0 + 100, keep_for=3600) == 0
    assert store.prune(T0 + 3700, keep_for=3600) == 2
    assert store.request_status("t1", "done", T0 + 3700) is None
    assert store.request_status("t1", "expired", T0 + 3700) is None
    assert store.request_status("t1", "fresh", T0 + 3700) is not None


def test_concurrent_leases_from_two_handles_never_overlap(
    store_factory: Callable[[], RelayStore],
) -> None:
    """Two store handles on one database (= two relay replicas), two threads each."""
    first, second = store_factory(), store_factory()
    _tenant_with_agents(first, "a1", "a2")
    for n in range(300):
        first.add_request("t1", f"r{n:03d}", "g", T0 + 600, b"x", now=T0 + n / 1000)
    leased: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(handle: RelayStore, agent: str, worker: int) -> None:
        try:
            n = 0
            while (
                grant := handle.lease(
                    "t1", "g", agent, f"L-{agent}-{worker}-{n}", now=T0 + 1, lease_timeout=LEASE
                )
            ) is not None:
                n += 1
                with lock:
                    leased.append(grant.request_id)
        except BaseException as exc:  # noqa: BLE001 - asserted on below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(handle, agent, w))
        for handle, agent in ((first, "a1"), (second, "a2"))
        for w in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    counts = Counter(leased)
    assert len(counts) == 300 and max(counts.values()) == 1


# --- write permits ------------------------------------------------------------------


def _leased(store: RelayStore, agent: str, lease_id: str, now: float) -> str:
    grant = store.lease("t1", "g", agent, lease_id, now=now, lease_timeout=LEASE)
    assert grant is not None
    return grant.request_id


def _permit(
    store: RelayStore,
    lease_id: str,
    agent: str,
    now: float,
    *,
    user: str = "U",
    ordered: bool = True,
) -> PermitDecision:
    return store.permit(
        lease_id, agent, user, ordered=ordered, now=now, lease_timeout=LEASE
    ).decision


def test_a_store_missing_a_method_fails_at_construction() -> None:
    methods = {
        name: getattr(SQLiteStore, name)
        for name in RelayStore.__abstractmethods__
        if name != "permit"
    }
    broken = type("Broken", (RelayStore,), methods)
    with pytest.raises(TypeError, match="permit"):
        broken()


def test_permit_renews_the_lease_and_needs_it(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    with pytest.raises(LeaseLost):
        _permit(store, "L1", "a2", T0 + 1)  # not a2's lease
    permit = store.permit("L1", "a1", "U", ordered=True, now=T0 + 20, lease_timeout=LEASE)
    assert (permit.decision, permit.lease_expires_at) == (PermitDecision.GRANTED, T0 + 20 + LEASE)
    assert store.lease("t1", "g", "a2", "L2", now=T0 + LEASE + 1, lease_timeout=LEASE) is None
    assert _permit(store, "L1", "a1", T0 + 21) is PermitDecision.GRANTED  # asked again: same
    store.complete("L1", "r1", "a1", b"ok", T0 + 22)
    with pytest.raises(LeaseLost):
        _permit(store, "L1", "a1", T0 + 23)  # answered: no permit any more


def test_redelivery_after_a_permit_is_in_doubt_never_granted(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0 + 1)
    _leased(store, "a1", "L1", T0)
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED
    # a1 dies mid-write; its lease runs out and a2 gets the request again.
    assert _leased(store, "a2", "L2", T0 + 1 + LEASE) == "r1"
    assert _permit(store, "L2", "a2", T0 + 2 + LEASE, user="U") is PermitDecision.IN_DOUBT
    assert _permit(store, "L2", "a2", T0 + 3 + LEASE, user="other") is PermitDecision.IN_DOUBT
    # Recorded in doubt: a newer request for the user may be written now.
    assert _leased(store, "a1", "L3", T0 + 3 + LEASE) == "r2"
    assert _permit(store, "L3", "a1", T0 + 3 + LEASE) is PermitDecision.RECHECK
    assert _permit(store, "L3", "a1", T0 + 3 + LEASE) is PermitDecision.GRANTED
    assert store.complete("L2", "r1", "a2", b"in_doubt", T0 + 4 + LEASE) is True
    status = store.request_status("t1", "r1", T0 + 5 + LEASE)
    assert status is not None and status.result == b"in_doubt"


M1, M2 = "1" * 64, "2" * 64  # write markers: (server, change stamp) hashes


def test_a_redelivery_with_the_holders_marker_takes_the_permit_over(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2", "a3")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    first = store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    assert (first.decision, first.taken_over) == (PermitDecision.GRANTED, False)
    # a1 dies before its write; a2 reads the same change stamp on the same server.
    assert _leased(store, "a2", "L2", T0 + 1 + LEASE) == "r1"
    again = store.permit(
        "L2", "a2", "U", ordered=True, now=T0 + 2 + LEASE, lease_timeout=LEASE, marker=M1
    )
    assert (again.decision, again.taken_over) == (PermitDecision.GRANTED, True)
    asked_twice = store.permit(
        "L2", "a2", "U", ordered=True, now=T0 + 3 + LEASE, lease_timeout=LEASE, marker=M1
    )
    assert (asked_twice.decision, asked_twice.taken_over) == (PermitDecision.GRANTED, False)
    with pytest.raises(LeaseLost):  # the old holder lost its permit: it cannot answer
        store.complete("L1", "r1", "a1", b"late", T0 + 4 + LEASE)
    assert store.complete("L2", "r1", "a2", b"succeeded", T0 + 4 + LEASE) is True
    status = store.request_status("t1", "r1", T0 + 5 + LEASE)
    assert status is not None and status.result == b"succeeded"


def test_asked_again_under_the_same_lease_the_marker_is_the_latest(store: RelayStore) -> None:
    # The holder re-read the entry after its grant (another write had landed since its
    # first read) and asked again: the relay keeps the marker it sent last.
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 2, lease_timeout=LEASE, marker=M2)
    assert _leased(store, "a2", "L2", T0 + 2 + LEASE) == "r1"
    stale = store.permit(
        "L2", "a2", "U", ordered=True, now=T0 + 3 + LEASE, lease_timeout=LEASE, marker=M1
    )
    assert stale.decision is PermitDecision.IN_DOUBT
    assert _leased(store, "a2", "L3", T0 + 4 + 2 * LEASE) == "r1"
    latest = store.permit(
        "L3", "a2", "U", ordered=True, now=T0 + 5 + 2 * LEASE, lease_timeout=LEASE, marker=M2
    )
    assert (latest.decision, latest.taken_over) == (PermitDecision.GRANTED, True)


def test_a_redelivery_with_another_marker_or_none_stays_in_doubt(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    _leased(store, "a1", "L3", T0)
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    store.permit("L3", "a1", "V", ordered=True, now=T0 + 1, lease_timeout=LEASE)  # no marker
    assert _leased(store, "a2", "L2", T0 + 1 + LEASE) == "r1"
    assert _leased(store, "a2", "L4", T0 + 1 + LEASE) == "r2"
    for lease_id, user, marker in (("L2", "U", M2), ("L2", "U", None), ("L4", "V", M1)):
        permit = store.permit(
            lease_id, "a2", user, ordered=True, now=T0 + 2 + LEASE, lease_timeout=LEASE,
            marker=marker,
        )
        assert permit.decision is PermitDecision.IN_DOUBT, (lease_id, marker)


def test_a_redelivery_waits_for_the_holders_late_answer_first(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    # a1 wrote (the entry changed: another marker) and its answer's post is late.
    assert _leased(store, "a2", "L2", T0 + 1 + LEASE) == "r1"

    def ask(now: float) -> PermitDecision:
        return store.permit(
            "L2", "a2", "U", ordered=True, now=now, lease_timeout=LEASE, marker=M2,
            late_answer_grace=25,
        ).decision

    assert ask(T0 + 2 + LEASE) is PermitDecision.BUSY
    assert ask(T0 + 25 + LEASE) is PermitDecision.BUSY
    assert store.complete("L1", "r1", "a1", b"succeeded", T0 + 20 + LEASE) is True
    with pytest.raises(LeaseLost):
        ask(T0 + 21 + LEASE)  # answered by the holder: the redelivery drops it
    status = store.request_status("t1", "r1", T0 + 22 + LEASE)
    assert status is not None and status.result == b"succeeded"


def test_after_the_grace_a_redelivery_is_in_doubt(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    assert _leased(store, "a2", "L2", T0 + 1 + LEASE) == "r1"
    permit = store.permit(
        "L2", "a2", "U", ordered=True, now=T0 + 27 + LEASE, lease_timeout=LEASE, marker=M2,
        late_answer_grace=25,
    )
    assert permit.decision is PermitDecision.IN_DOUBT


def test_a_marker_never_takes_over_a_permit_whose_lease_still_runs(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    store.remove_agent("a1", T0 + 2)  # its leases go back at once; it may still write
    assert _leased(store, "a2", "L2", T0 + 2) == "r1"
    permit = store.permit("L2", "a2", "U", ordered=True, now=T0 + 3, lease_timeout=LEASE, marker=M1)
    assert permit.decision is PermitDecision.IN_DOUBT


def test_a_taken_over_permit_keeps_the_users_writes_in_order(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "old", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "new", "g", T0 + 600, b"x", now=T0 + 1)
    assert _leased(store, "a1", "L1", T0) == "old"
    store.permit("L1", "a1", "U", ordered=True, now=T0 + 1, lease_timeout=LEASE, marker=M1)
    # a1 dies before writing: its open permit holds the newer request back ...
    assert _leased(store, "a2", "L3", T0 + 2) == "new"
    assert _permit(store, "L3", "a2", T0 + 2) is PermitDecision.BUSY
    store.release("L3", "a2")
    assert _leased(store, "a2", "L2", T0 + 2 + LEASE) == "old"
    assert _leased(store, "a2", "L3b", T0 + 2 + LEASE) == "new"
    assert _permit(store, "L3b", "a2", T0 + 2 + LEASE) is PermitDecision.BUSY
    # ... the redelivery takes the permit over and writes first; then the newer one.
    taken = store.permit(
        "L2", "a2", "U", ordered=True, now=T0 + 3 + LEASE, lease_timeout=LEASE, marker=M1
    )
    assert (taken.decision, taken.taken_over) == (PermitDecision.GRANTED, True)
    assert _permit(store, "L3b", "a2", T0 + 3 + LEASE) is PermitDecision.BUSY
    store.complete("L2", "old", "a2", b"succeeded", T0 + 4 + LEASE)
    assert _permit(store, "L3b", "a2", T0 + 5 + LEASE) is PermitDecision.RECHECK
    assert _permit(store, "L3b", "a2", T0 + 5 + LEASE) is PermitDecision.GRANTED


def _recheck_setup(store: RelayStore) -> None:
    """Two resets for one user, both leased at T0; r1 is written and closed at T0 + 2,
    after r2's agent read the entry (its marker M1 describes the entry before r1)."""
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0)
    assert _leased(store, "a1", "L1", T0) == "r1"
    assert _leased(store, "a2", "L2", T0) == "r2"
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED
    store.complete("L1", "r1", "a1", b"succeeded", T0 + 2)


def test_a_write_after_the_lease_began_reserves_the_permit_for_a_fresh_read(
    store: RelayStore,
) -> None:
    _recheck_setup(store)
    ask = store.permit("L2", "a2", "U", ordered=True, now=T0 + 3, lease_timeout=LEASE, marker=M1)
    assert ask.decision is PermitDecision.RECHECK
    # The reservation excludes every other write to the user, as a grant does.
    store.add_request("t1", "r3", "g", T0 + 600, b"x", now=T0 + 3)
    assert _leased(store, "a1", "L3", T0 + 3) == "r3"
    assert _permit(store, "L3", "a1", T0 + 4) is PermitDecision.BUSY  # newer: waits
    store.add_request("t1", "u1", "g", T0 + 600, b"x", now=T0 + 4)
    assert _leased(store, "a1", "L4", T0 + 4) == "u1"
    assert _permit(store, "L4", "a1", T0 + 4, ordered=False) is PermitDecision.BUSY
    # Confirmed with the marker read after the reservation: granted.
    ok = store.permit("L2", "a2", "U", ordered=True, now=T0 + 5, lease_timeout=LEASE, marker=M2)
    assert ok.decision is PermitDecision.GRANTED


def test_a_write_closed_before_the_lease_began_needs_no_recheck(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0)
    assert _leased(store, "a1", "L1", T0) == "r1"
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED
    store.complete("L1", "r1", "a1", b"succeeded", T0 + 2)
    # Leased well after that write closed: the agent's read saw it.
    assert _leased(store, "a2", "L2", T0 + 10) == "r2"
    assert _permit(store, "L2", "a2", T0 + 11) is PermitDecision.GRANTED


def test_a_reservation_whose_holder_died_is_taken_over_whatever_the_marker(
    store: RelayStore,
) -> None:
    """Reserved, never confirmed: no write was licensed, so the redelivery takes the
    permit over at once (no grace) although the entry changed (r1's write)."""
    _recheck_setup(store)
    ask = store.permit("L2", "a2", "U", ordered=True, now=T0 + 3, lease_timeout=LEASE, marker=M1)
    assert ask.decision is PermitDecision.RECHECK
    assert _leased(store, "a1", "L5", T0 + 4 + LEASE) == "r2"  # a2 died
    taken = store.permit(
        "L5", "a1", "U", ordered=True, now=T0 + 5 + LEASE, lease_timeout=LEASE, marker=M2,
        late_answer_grace=25,
    )
    assert (taken.decision, taken.taken_over) == (PermitDecision.GRANTED, True)
    with pytest.raises(LeaseLost):  # the dead holder's confirmation comes too late
        store.permit("L2", "a2", "U", ordered=True, now=T0 + 6 + LEASE, lease_timeout=LEASE)


def test_a_reservation_given_back_or_expired_licensed_no_write(store: RelayStore) -> None:
    _recheck_setup(store)
    assert _permit(store, "L2", "a2", T0 + 3) is PermitDecision.RECHECK
    store.release("L2", "a2")  # e.g. the entry changed: the redelivery decides afresh
    store.add_request("t1", "u1", "g", T0 + 600, b"x", now=T0 + 4)
    assert _leased(store, "a1", "L3", T0 + 10) == "r2"
    assert _leased(store, "a1", "L4", T0 + 10) == "u1"
    # Nothing of r2 is open: another request for the user is not held back.
    assert _permit(store, "L4", "a1", T0 + 11, ordered=False) is PermitDecision.GRANTED
    store.complete("L4", "u1", "a1", b"succeeded", T0 + 12)
    # r2 reserved again under its new lease, then the request expires unanswered.
    assert _permit(store, "L3", "a1", T0 + 13) is PermitDecision.RECHECK
    status = store.request_status("t1", "r2", T0 + 601)
    assert status is not None and status.state is RequestState.EXPIRED
    counts = store.request_counts(T0 + 601)  # /metrics agrees
    assert (counts["expired"], counts["in_doubt"], counts["done"]) == (1, 0, 2)


def test_the_first_writers_late_answer_is_kept(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED
    assert _leased(store, "a2", "L2", T0 + 2 + LEASE) == "r1"  # a1's post was slow
    assert store.complete("L1", "r1", "a1", b"succeeded", T0 + 3 + LEASE) is True
    assert store.complete("L1", "r1", "a1", b"succeeded", T0 + 4 + LEASE) is False
    with pytest.raises(LeaseLost):
        _permit(store, "L2", "a2", T0 + 4 + LEASE)  # a2 drops it: the answer is in
    with pytest.raises(LeaseLost):
        store.complete("L2", "r1", "a2", b"in_doubt", T0 + 5 + LEASE)
    status = store.request_status("t1", "r1", T0 + 6 + LEASE)
    assert status is not None and status.result == b"succeeded"


def test_one_open_permit_per_user_and_the_newer_request_wins(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "old", "g", T0 + 600, b"x", now=T0 + 5)  # created_at says nothing
    store.add_request("t1", "new", "g", T0 + 600, b"x", now=T0)  # submitted second: newer
    store.add_request("t1", "elsewhere", "g", T0 + 600, b"x", now=T0 + 6)
    assert _leased(store, "a1", "Lnew", T0 + 1) == "new"
    assert _leased(store, "a2", "Lold", T0 + 1) == "old"
    assert _leased(store, "a2", "Lels", T0 + 1) == "elsewhere"
    assert _permit(store, "Lnew", "a1", T0 + 2) is PermitDecision.GRANTED
    assert _permit(store, "Lold", "a2", T0 + 2) is PermitDecision.SUPERSEDED
    assert _permit(store, "Lels", "a2", T0 + 2, user="V") is PermitDecision.GRANTED  # another user
    assert _permit(store, "Lels", "a2", T0 + 2, user="V") is PermitDecision.GRANTED


def test_an_open_permit_makes_the_next_one_wait(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r3", "g", T0 + 600, b"x", now=T0)
    _leased(store, "a1", "L1", T0)
    _leased(store, "a2", "L2", T0)
    _leased(store, "a2", "L3", T0)
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED
    assert _permit(store, "L2", "a2", T0 + 1) is PermitDecision.BUSY
    assert _permit(store, "L3", "a2", T0 + 1, ordered=False) is PermitDecision.BUSY  # unlock too
    store.complete("L1", "r1", "a1", b"ok", T0 + 2)
    assert _permit(store, "L3", "a2", T0 + 3, ordered=False) is PermitDecision.RECHECK
    assert _permit(store, "L3", "a2", T0 + 3, ordered=False) is PermitDecision.GRANTED
    assert _permit(store, "L2", "a2", T0 + 3) is PermitDecision.BUSY
    store.complete("L3", "r3", "a2", b"ok", T0 + 4)
    # r2 is older than r3, but r3 does not set a password: it supersedes nothing.
    assert _permit(store, "L2", "a2", T0 + 5) is PermitDecision.RECHECK
    assert _permit(store, "L2", "a2", T0 + 5) is PermitDecision.GRANTED


def test_a_removed_agents_permit_excludes_until_its_lease_would_end(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0 + 1)
    _leased(store, "a1", "L1", T0)
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED  # until T0 + 1 + LEASE
    store.remove_agent("a1", T0 + 2)  # its process may still be writing
    assert _leased(store, "a2", "L2", T0 + 2) == "r1"
    assert _permit(store, "L2", "a2", T0 + 3) is PermitDecision.IN_DOUBT
    store.complete("L2", "r1", "a2", b"in_doubt", T0 + 3)
    assert _leased(store, "a2", "L3", T0 + 4) == "r2"
    assert _permit(store, "L3", "a2", T0 + 4) is PermitDecision.BUSY
    assert _permit(store, "L3", "a2", T0 + 1 + LEASE) is PermitDecision.RECHECK
    assert _permit(store, "L3", "a2", T0 + 1 + LEASE) is PermitDecision.GRANTED


def test_an_expired_request_with_an_unanswered_permit_is_in_doubt(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 10, b"x", now=T0)
    store.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0 + 1)
    store.add_request("t1", "r3", "g", T0 + 10, b"x", now=T0 + 2)
    _leased(store, "a1", "L1", T0)
    assert _permit(store, "L1", "a1", T0 + 1) is PermitDecision.GRANTED
    # Nobody redelivers r1 (expired) and a1 never answers: the portal is told in
    # doubt, never "expired" (which would claim nothing was written).
    status = store.request_status("t1", "r1", T0 + 2 + LEASE)
    assert status is not None and status.state is RequestState.IN_DOUBT
    status = store.request_status("t1", "r3", T0 + 2 + LEASE)
    assert status is not None and status.state is RequestState.EXPIRED
    assert _leased(store, "a2", "L2", T0 + 2) == "r2"
    assert _permit(store, "L2", "a2", T0 + 3) is PermitDecision.BUSY
    assert _permit(store, "L2", "a2", T0 + 1 + LEASE) is PermitDecision.RECHECK
    assert _permit(store, "L2", "a2", T0 + 1 + LEASE) is PermitDecision.GRANTED


def test_permits_from_two_handles_never_overlap(
    store_factory: Callable[[], RelayStore],
) -> None:
    """Many requests for one user, two handles (replicas) x two agents: at any time
    at most one permit is open, and once a newer one was granted no older one is."""
    first, second = store_factory(), store_factory()
    _tenant_with_agents(first, "a1", "a2")
    for n in range(40):
        first.add_request("t1", f"r{n:02d}", "g", T0 + 600, b"x", now=T0)
    granted: list[str] = []
    open_permits, most = [0], [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(handle: RelayStore, agent: str, worker: int) -> None:
        try:
            n = 0
            while (
                grant := handle.lease(
                    "t1", "g", agent, f"L-{agent}-{worker}-{n}", now=T0 + 1, lease_timeout=LEASE
                )
            ) is not None:
                n += 1
                while True:
                    decision = _permit(handle, grant.lease_id, agent, T0 + 2)
                    if decision is PermitDecision.RECHECK:  # reserved: confirm
                        decision = _permit(handle, grant.lease_id, agent, T0 + 2)
                    if decision is not PermitDecision.BUSY:
                        break
                if decision is PermitDecision.GRANTED:
                    with lock:
                        granted.append(grant.request_id)
                        open_permits[0] += 1
                        most[0] = max(most[0], open_permits[0])
                    with lock:
                        open_permits[0] -= 1  # before complete() closes the permit
                    handle.complete(grant.lease_id, grant.request_id, agent, b"ok", T0 + 2)
                else:
                    assert decision is PermitDecision.SUPERSEDED
                    handle.complete(grant.lease_id, grant.request_id, agent, b"sup", T0 + 2)
        except BaseException as exc:  # noqa: BLE001 - asserted on below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(handle, agent, w))
        for handle, agent in ((first, "a1"), (second, "a2"))
        for w in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert most[0] == 1
    assert granted == sorted(granted)  # grants only ever move to newer requests
    assert granted[-1] == "r39"


def test_a_signed_call_nonce_is_usable_once(store: RelayStore) -> None:
    """OpsStore.use_nonce: the replay guard every relay replica shares."""
    assert store.use_nonce("agt_a", "n-1", 100.0)
    assert not store.use_nonce("agt_a", "n-1", 101.0)  # the replay
    assert store.use_nonce("agt_b", "n-1", 100.0)  # another agent's nonce space
    assert store.prune_nonces(100.5) == 2
    assert store.use_nonce("agt_a", "n-1", 200.0)  # forgotten once out of the window


def test_operations_counts_and_ping(store: RelayStore) -> None:
    store.ping()
    counts = store.request_counts(time.time())
    assert set(counts) == {"queued", "leased", "done", "expired", "in_doubt"}
    assert all(n == 0 for n in counts.values())
    assert store.online_counts(0.0) == []
