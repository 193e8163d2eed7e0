"""Waiting for several results in one long-poll (POST /v1/requests/results:wait) over
real HTTP: the route, PortalClient.poll_results/wait_results and ResultWaiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from cloud.relay.client import (
    InvalidEnvelope,
    PortalClient,
    RequestExpired,
    ResultTimeout,
    UnknownRequest,
)
from cloud.relay.waiter import ResultWaiter
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope


def _result(n: int) -> bytes:
    return b'{"status":"succeeded","n":%d}' % n


def test_answers_every_state_and_the_exact_bytes(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agent = enroll_agent()
    done, leased, queued = (portal.submit(fake_envelope(tenant[0])) for _ in range(3))
    with agent.transport() as transport:
        first, second = transport.lease_many(wait=5, most=2)
        transport.complete(first, _result(1))
    assert (first.request_id, second.request_id) == (done, leased)
    started = time.monotonic()
    states = portal.poll_results([queued, done, leased, "never-submitted"], wait=10)
    assert time.monotonic() - started < 5  # settled ones answer at once
    assert [(s.id, s.state, s.result) for s in states] == [
        (queued, "queued", None),
        (done, "done", _result(1)),
        (leased, "leased", None),
        ("never-submitted", "unknown", None),
    ]
    assert states[1].value() == _result(1)
    with pytest.raises(UnknownRequest):
        states[3].value()
    with pytest.raises(ResultTimeout) as info:
        states[0].value()
    assert info.value.state == "queued"


def test_long_poll_wakes_when_one_of_them_is_answered(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(poll_interval=5)  # only the wake-up answers in well under 5 s
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as transport, relay.portal(token) as portal:
        ids = [portal.submit(fake_envelope(tenant)) for _ in range(3)]
        leases = transport.lease_many(wait=5, most=3)
        got: list[tuple[float, list[str]]] = []

        def poll() -> None:
            states = portal.poll_results(ids, wait=20)
            got.append((time.monotonic(), [s.state for s in states]))

        waiting = threading.Thread(target=poll)
        waiting.start()
        time.sleep(0.5)  # parked in the long-poll
        posted = time.monotonic()
        transport.complete(leases[1], _result(2))
        waiting.join(20)
    assert got and got[0][1] == ["leased", "done", "leased"]
    assert got[0][0] - posted < 2.5


def test_wait_results_until_all_are_settled(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory()
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as transport, relay.portal(token) as portal:
        answered = [portal.submit(fake_envelope(tenant)) for _ in range(2)]
        expiring = portal.submit(fake_envelope(tenant, exp_in=1.5))
        leases = transport.lease_many(wait=5, most=2)
        assert [lease.request_id for lease in leases] == answered

        def answer() -> None:
            time.sleep(0.3)
            transport.complete(leases[0], _result(0))
            time.sleep(0.3)
            transport.complete(leases[1], _result(1))

        threading.Thread(target=answer).start()
        states = portal.wait_results([*answered, expiring], timeout=20)
    assert states[answered[0]].value() == _result(0)
    assert states[answered[1]].value() == _result(1)
    with pytest.raises(RequestExpired):
        states[expiring].value()


def test_refuses_a_bad_id_and_too_many(portal: PortalClient) -> None:
    with pytest.raises(InvalidEnvelope):
        portal.poll_results(["not an id!"])
    with pytest.raises(ValueError, match="1 to 100"):
        portal.poll_results([f"r{n}" for n in range(101)])



def test_result_waiter_shares_long_polls_between_threads(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(log_level="info", access_log=True)  # counts the calls
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with (
        agent.transport() as transport,
        relay.portal(token) as portal,
        ResultWaiter(portal) as waiter,
    ):
        ids = [portal.submit(fake_envelope(tenant)) for _ in range(8)]
        got: dict[str, bytes] = {}

        def wait(request_id: str) -> None:
            got[request_id] = waiter.wait(request_id, timeout=20)

        threads = [threading.Thread(target=wait, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every thread is waiting
        leases = transport.lease_many(wait=5, most=8)
        assert (
            transport.complete_many([(lease, _result(n)) for n, lease in enumerate(leases)])
            == ["stored"] * 8
        )
        for thread in threads:
            thread.join(20)
        with pytest.raises(ResultTimeout) as info:  # nobody answers this one
            waiter.wait(portal.submit(fake_envelope(tenant)), timeout=1)
    assert got == {lease.request_id: _result(n) for n, lease in enumerate(leases)}
    assert info.value.state == "queued"
    relay.stop()
    polls = relay.calls().count("/v1/requests/results:wait")
    assert 1 <= polls < 8, relay.calls()  # shared, not one per request


def test_a_request_waited_for_right_after_an_answer_joins_the_next_poll(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    """A portal thread answered by a poll sends its next request at once: that request
    goes in the same next poll as those still pending, not in a poll of its own, so
    when both are answered together one poll brings both."""
    relay = relay_factory(log_level="info", access_log=True)  # counts the calls
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with (
        agent.transport() as transport,
        relay.portal(token) as portal,
        ResultWaiter(portal, min_interval=0.3, fresh_after=5.0) as waiter,
    ):
        first, pending = portal.submit(fake_envelope(tenant)), portal.submit(fake_envelope(tenant))
        got: dict[str, bytes] = {}

        def wait_then_send_the_next() -> None:
            got[first] = waiter.wait(first, timeout=20)
            nxt = portal.submit(fake_envelope(tenant))
            got[nxt] = waiter.wait(nxt, timeout=20)

        def wait_pending() -> None:
            got[pending] = waiter.wait(pending, timeout=20)

        threads = [threading.Thread(target=f) for f in (wait_then_send_the_next, wait_pending)]
        threads[0].start()
        time.sleep(0.3)  # `first` is in a poll; `pending` goes with the next one
        threads[1].start()
        time.sleep(0.1)
        leases = {lease.request_id: lease for lease in transport.lease_many(wait=5, most=2)}
        assert transport.complete_many([(leases[first], _result(0))]) == ["stored"]
        time.sleep(0.6)  # the next request is waited for, in the poll with `pending`
        rest = transport.lease_many(wait=5, most=2)
        outcomes = transport.complete_many(
            [(leases[pending], _result(1))] + [(lease, _result(2)) for lease in rest]
        )
        assert outcomes == ["stored"] * 2
        for thread in threads:
            thread.join(20)
    assert len(got) == 3
    relay.stop()
    polls = relay.calls().count("/v1/requests/results:wait")
    assert polls == 2, relay.calls()  # `first`; then `pending` and the next together
