"""Lease exclusivity under concurrency, and lease timeouts, over real HTTP."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from agent.transports.base import Lease, LeaseLost
from cloud.relay.client import PortalClient
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope

REQUESTS = 200


@pytest.mark.slow
def test_two_agents_never_lease_the_same_request(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agents = [enroll_agent().transport() for _ in range(2)]
    ids = {portal.submit(fake_envelope(tenant[0])) for _ in range(REQUESTS)}
    leased: dict[int, list[str]] = {0: [], 1: []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(n: int) -> None:
        try:
            start.wait()
            while (lease := agents[n].lease(wait=0)) is not None:
                leased[n].append(lease.request_id)
                agents[n].complete(lease, b'{"status":"succeeded"}')
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    assert not errors, errors
    counts = Counter(leased[0] + leased[1])
    assert set(counts) == ids
    assert max(counts.values()) == 1
    print(f"\n{REQUESTS} requests, 2 agents: {len(leased[0])}/{len(leased[1])} split, "
          f"{REQUESTS / elapsed:.0f} lease+complete/s over HTTP")
    assert leased[0] and leased[1], "both agents should have had work"


def test_lease_timeout_hands_the_request_to_another_agent(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(lease_timeout=1)
    tenant, token = relay.create_tenant()
    slow, fast = relay.enroll_agent(tenant), relay.enroll_agent(tenant)
    with slow.transport() as a, fast.transport() as b, relay.portal(token) as portal:
        request_id = portal.submit(fake_envelope(tenant))
        lease = a.lease(wait=5)
        assert lease is not None
        assert b.lease(wait=0) is None
        started = time.monotonic()
        taken = b.lease(wait=5)  # a never renews
        assert taken is not None and taken.request_id == request_id
        waited = time.monotonic() - started
        assert 0.5 < waited < 3
        with pytest.raises(LeaseLost):
            a.renew(lease)
        with pytest.raises(LeaseLost):
            a.complete(lease, b'{"status":"succeeded"}')
        b.complete(taken, b'{"status":"succeeded","by":"b"}')
        assert portal.wait_result(request_id, timeout=5) == b'{"status":"succeeded","by":"b"}'


def test_renew_keeps_the_lease(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(lease_timeout=1)
    tenant, token = relay.create_tenant()
    holder, other = relay.enroll_agent(tenant), relay.enroll_agent(tenant)
    with holder.transport() as a, other.transport() as b, relay.portal(token) as portal:
        portal.submit(fake_envelope(tenant))
        lease: Lease | None = a.lease(wait=5)
        assert lease is not None
        for _ in range(4):  # 2 s in total, twice the lease timeout
            time.sleep(0.5)
            lease = a.renew(lease)
            assert b.lease(wait=0) is None
        a.complete(lease, b'{"status":"succeeded"}')


def test_timed_out_lease_can_still_complete_if_nobody_took_it(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    """A slow write that outlives its lease is still reported, unless another agent
    took the request meanwhile (then the late result is refused with 409)."""
    relay = relay_factory(lease_timeout=1)
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as a, relay.portal(token) as portal:
        request_id = portal.submit(fake_envelope(tenant))
        lease = a.lease(wait=5)
        assert lease is not None
        time.sleep(1.2)
        assert portal.poll_result(request_id)[0] == "queued"
        a.complete(lease, b'{"status":"succeeded"}')
        assert portal.wait_result(request_id, timeout=2) == b'{"status":"succeeded"}'


def test_logs_name_ids_but_never_carry_envelopes_or_results(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(log_level="debug")
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    envelope = fake_envelope(tenant, padding=8).replace(b"c2VhbGVk", b"SEALEDMARK")
    with agent.transport() as transport, relay.portal(token) as portal:
        request_id = portal.submit(envelope)
        lease = transport.lease(wait=5)
        assert lease is not None
        transport.complete(lease, b'{"status":"succeeded","detail":"RESULTMARK"}')
        portal.wait_result(request_id, timeout=5)
        transport.heartbeat(agent.heartbeat_body(version="HEARTBEATMARK"))
    log = relay.log()
    assert request_id in log and agent.agent_id in log
    for marker in ("SEALEDMARK", "RESULTMARK", "HEARTBEATMARK", token):
        assert marker not in log


def test_stopping_relay_ends_open_long_polls_cleanly(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    """SIGTERM: a parked lease poll gets an ordinary "nothing yet" (204) within a
    re-check interval, so the agent reconnects instead of seeing a reset connection."""
    relay = relay_factory()
    tenant, _ = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    outcome: list[object] = []
    with agent.transport() as transport:
        poller = threading.Thread(target=lambda: outcome.append(transport.lease(wait=30)))
        poller.start()
        time.sleep(0.5)
        started = time.monotonic()
        relay.stop()
        stopped = time.monotonic() - started
        poller.join(timeout=5)
    assert outcome == [None]
    assert stopped < 2
