"""LeasePermits, the agent's permit gate, over the in-memory queue (same rules as the
relay): BUSY is waited out, then the lease is given back; a lost answer is asked
again under the same lease and gets the same grant."""

from __future__ import annotations

import threading
import time

import pytest

from agent.permits import GiveBack, LeasePermits, user_key
from agent.transports.base import LeaseLost, TransportUnavailable
from agent.transports.memory import MemoryQueue, MemoryTransport
from wire.permits import PermitDecision


def _two_leases() -> tuple[MemoryTransport, MemoryTransport, object, object]:
    queue = MemoryQueue()
    a, b = MemoryTransport(queue, "a"), MemoryTransport(queue, "b")
    queue.put(b"1", request_id="r1")
    queue.put(b"2", request_id="r2")
    return a, b, a.lease(wait=0), b.lease(wait=0)


def test_user_key_is_the_same_for_every_spelling_of_one_id() -> None:
    guid = "5A8F0C1E-2B3D-4E5F-8091-A2B3C4D5E6F7"
    assert user_key("t", guid) == user_key("t", guid.lower()) == user_key("t", f" {guid} ")
    assert user_key("t", guid) != user_key("other-tenant", guid)
    assert len(user_key("t", guid)) == 64 and guid.lower() not in user_key("t", guid)


def test_busy_is_waited_out_then_reserved_for_a_fresh_read_then_granted() -> None:
    """The other write closed while we waited, after our lease began: it may postdate
    our read, so the relay reserves the permit (RECHECK) and grants the confirmation."""
    a, b, first, second = _two_leases()
    assert a.permit(first, "U", ordered=False).decision is PermitDecision.GRANTED  # type: ignore[arg-type]
    threading.Timer(0.3, a.complete, args=(first, b"done")).start()
    gate = LeasePermits(b, second, threading.Event(), busy_wait=5)  # type: ignore[arg-type]
    started = time.monotonic()
    permit = gate.ask("U", ordered=False, deadline=time.time() + 10, marker="m-stale")
    assert permit.decision is PermitDecision.RECHECK
    assert 0.25 < time.monotonic() - started < 3
    # Reserved: another request for the user waits; the confirmation is granted.
    again = gate.ask("U", ordered=False, deadline=time.time() + 10, marker="m-fresh")
    assert again.decision is PermitDecision.GRANTED


def test_busy_too_long_gives_the_lease_back() -> None:
    a, b, first, second = _two_leases()
    assert a.permit(first, "U", ordered=False).decision is PermitDecision.GRANTED  # type: ignore[arg-type]
    gate = LeasePermits(b, second, threading.Event(), busy_wait=0.3)  # type: ignore[arg-type]
    with pytest.raises(GiveBack):
        gate.ask("U", ordered=False, deadline=time.time() + 10)
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(GiveBack):  # and at once when the agent is stopping
        LeasePermits(b, second, stopping, busy_wait=30).ask(  # type: ignore[arg-type]
            "U", ordered=False, deadline=time.time() + 10)


def test_a_lost_answer_is_asked_again_and_granted_once() -> None:
    _, b, _, second = _two_leases()
    b.fail_next(TransportUnavailable("answer lost"))
    gate = LeasePermits(b, second, threading.Event())  # type: ignore[arg-type]
    assert gate.ask("U", ordered=True, deadline=time.time() + 5).decision is PermitDecision.GRANTED
    b.fail_next(LeaseLost("gone"))
    with pytest.raises(LeaseLost):
        gate.ask("U", ordered=True, deadline=time.time() + 5)
