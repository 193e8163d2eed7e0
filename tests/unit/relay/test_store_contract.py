"""Behaviour every RelayStore must have (run against each back end via `store`).

Time is passed in explicitly, so expiry and lease timeouts are tested without sleeping.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from cloud.relay.store import (
    DuplicateError,
    EnrollmentError,
    LeaseConflict,
    NotFoundError,
    PortalKey,
    RelayStore,
    RequestState,
)

T0 = 1_700_000_000.0
LEASE = 30.0


def _tenant_with_agents(store: RelayStore, *agents: str, tenant: str = "t1",
                        group: str = "g") -> None:
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
    store.add_portal_key("t1", PortalKey("old", "K1", None, T0 + 10), T0 + 1)  # same key: new window
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
    with pytest.raises(LeaseConflict):
        store.renew("L1", "a2", T0 + 21, LEASE)  # not a2's lease
    taken = store.lease("t1", "g", "a2", "L2", now=T0 + 20 + LEASE, lease_timeout=LEASE)
    assert taken is not None and taken.request_id == "r1"
    with pytest.raises(LeaseConflict):
        store.renew("L1", "a1", T0 + 51, LEASE)
    with pytest.raises(LeaseConflict):
        store.complete("L1", "r1", "a1", b"late", T0 + 51)
    assert store.complete("L2", "r1", "a2", b"ok", T0 + 52) is True


def test_release_requeues_at_once(store: RelayStore) -> None:
    _tenant_with_agents(store, "a1", "a2")
    store.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    assert store.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=LEASE) is not None
    with pytest.raises(LeaseConflict):
        store.release("L1", "a2")
    assert store.release("L1", "a1") == "r1"
    with pytest.raises(LeaseConflict):
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
    with pytest.raises(LeaseConflict):
        store.complete("L1", "r1", "a2", b"r", T0 + 2)
    with pytest.raises(LeaseConflict):
        store.complete("L1", "r-other", "a1", b"r", T0 + 2)
    assert store.complete("L1", "r1", "a1", b"result", T0 + 2) is True
    assert store.complete("L1", "r1", "a1", b"result", T0 + 3) is False  # idempotent
    with pytest.raises(LeaseConflict):
        store.complete("L1", "r1", "a2", b"result", T0 + 3)
    with pytest.raises(LeaseConflict):
        store.renew("L1", "a1", T0 + 3, LEASE)
    status = store.request_status("t1", "r1", T0 + 999)  # results outlive exp
    assert status is not None and (status.state, status.result) == (RequestState.DONE, b"result")
    assert store.request_status("t2", "r1", T0) is None  # other tenant
    assert store.request_tenant_group("L1") == ("t1", "g", "r1")


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
            while (grant := handle.lease("t1", "g", agent, f"L-{agent}-{worker}-{n}",
                                         now=T0 + 1, lease_timeout=LEASE)) is not None:
                n += 1
                with lock:
                    leased.append(grant.request_id)
        except BaseException as exc:  # noqa: BLE001 - asserted on below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(handle, agent, w))
        for handle, agent in ((first, "a1"), (second, "a2")) for w in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    counts = Counter(leased)
    assert len(counts) == 300 and max(counts.values()) == 1
