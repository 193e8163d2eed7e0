"""MemoryTransport keeps the same lease rules as the relay, so agent unit tests that
use it exercise the real semantics (exclusive leases, timeouts, idempotent results)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from agent.transports.base import AuthenticationFailed, LeaseLost, Transport, TransportUnavailable
from agent.transports.memory import MemoryQueue, MemoryTransport


def test_is_a_transport() -> None:
    transport: Transport = MemoryTransport()
    assert transport.lease(wait=0) is None


def test_round_trip() -> None:
    transport = MemoryTransport()
    rid = transport.queue.put(b'{"header": {"id": "r-1"}}')
    assert rid == "r-1"
    lease = transport.lease(wait=1)
    assert lease is not None and lease.envelope == b'{"header": {"id": "r-1"}}'
    assert "header" not in repr(lease)  # envelopes stay out of logs
    transport.complete(transport.renew(lease), b"result")
    transport.complete(lease, b"result")  # idempotent
    assert transport.queue.wait_result("r-1", timeout=1) == b"result"
    assert transport.queue.pending() == []
    with pytest.raises(ValueError):
        transport.queue.put(b"{}", request_id="r-1")


def test_lease_waits_for_a_put_from_another_thread() -> None:
    transport = MemoryTransport()
    threading.Timer(0.1, transport.queue.put, args=(b"x",), kwargs={"request_id": "r"}).start()
    started = time.monotonic()
    lease = transport.lease(wait=5)
    assert lease is not None and lease.request_id == "r"
    assert time.monotonic() - started < 1


def test_two_agents_lease_exclusively() -> None:
    queue = MemoryQueue()
    agents = [MemoryTransport(queue, f"a{n}") for n in range(2)]
    for n in range(200):
        queue.put(b"x", request_id=f"r{n}")
    leased: list[str] = []
    lock = threading.Lock()

    def work(transport: MemoryTransport) -> None:
        while (lease := transport.lease(wait=0)) is not None:
            with lock:
                leased.append(lease.request_id)
            transport.complete(lease, b"ok")

    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leased) == 200 and max(Counter(leased).values()) == 1


def test_lease_timeout_release_and_lost_leases() -> None:
    clock = [1000.0]
    queue = MemoryQueue(lease_timeout=30, clock=lambda: clock[0])
    a, b = MemoryTransport(queue, "a"), MemoryTransport(queue, "b")
    queue.put(b"x", request_id="r")
    lease = a.lease(wait=0)
    assert lease is not None and b.lease(wait=0) is None
    clock[0] += 31
    taken = b.lease(wait=0)
    assert taken is not None and queue.attempts("r") == 2
    for call in (a.renew, a.release):
        with pytest.raises(LeaseLost):
            call(lease)
    with pytest.raises(LeaseLost):
        a.complete(lease, b"late")
    b.release(taken)
    again = a.lease(wait=0)
    assert again is not None
    a.complete(again, b"done")
    assert queue.result("r") == b"done"


def test_expired_requests_are_not_leased() -> None:
    clock = [1000.0]
    queue = MemoryQueue(clock=lambda: clock[0])
    queue.put(b"x", request_id="r", exp=1010.0)
    clock[0] = 1010.0
    assert MemoryTransport(queue).lease(wait=0) is None


def test_fault_injection_heartbeats_and_keys() -> None:
    transport = MemoryTransport()
    transport.fail_next(times=2)
    for _ in range(2):
        with pytest.raises(TransportUnavailable):
            transport.heartbeat(b"{}")
    transport.heartbeat(b'{"v": 1}')
    assert transport.queue.heartbeats == [("memory-agent", b'{"v": 1}')]
    transport.fail_next(AuthenticationFailed("removed", code="agent_removed"))
    with pytest.raises(AuthenticationFailed):
        transport.portal_keys()
    transport.queue.portal_keys.append({"kid": "p1", "public_key": "K"})
    assert transport.portal_keys() == [{"kid": "p1", "public_key": "K"}]
    transport.close()
    with pytest.raises(Exception, match="closed"):
        transport.lease(wait=0)


def test_permits_follow_the_relays_rules() -> None:
    from wire.permits import PermitDecision

    queue = MemoryQueue(lease_timeout=0.2)
    a, b = MemoryTransport(queue, "a"), MemoryTransport(queue, "b")
    older, newer = queue.put(b"old", request_id="old"), queue.put(b"new", request_id="new")
    l_old, l_new = a.lease(wait=0), b.lease(wait=0)
    assert l_old is not None and l_new is not None
    assert (l_old.request_id, l_new.request_id) == (older, newer)
    granted = b.permit(l_new, "U", ordered=True)
    assert granted.decision is PermitDecision.GRANTED
    assert a.permit(l_old, "U", ordered=True).decision is PermitDecision.SUPERSEDED
    a.complete(l_old, b"superseded")
    time.sleep(0.3)  # b dies mid-write: its lease runs out
    again = a.lease(wait=1)
    assert again is not None and again.request_id == newer
    assert a.permit(again, "U", ordered=True).decision is PermitDecision.IN_DOUBT
    b.complete(granted.lease, b"succeeded")  # the permit holder's late answer wins
    assert queue.wait_result(newer, timeout=1) == b"succeeded"
    with pytest.raises(LeaseLost):
        a.complete(again, b"in_doubt")
