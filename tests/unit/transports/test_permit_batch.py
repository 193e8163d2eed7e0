"""PermitBatcher: permits asked while another permit call is in flight share the next
call, and each worker gets exactly the answer a single call would have given it."""

from __future__ import annotations

import threading
import time

from agent.permit_batch import BatchedPermitTransport, PermitBatcher
from agent.transports.base import Lease, LeaseLost, Permit, TransportUnavailable
from agent.transports.memory import MemoryQueue, MemoryTransport
from wire.permits import PermitDecision


class _SlowPermits(MemoryTransport):
    """The first single permit call takes a while (a relay under load)."""

    def permit(
        self, lease: Lease, user_key: str, *, ordered: bool, marker: str | None = None
    ) -> Permit:
        time.sleep(0.3)
        return super().permit(lease, user_key, ordered=ordered, marker=marker)


def _leases(queue: MemoryQueue, transport: MemoryTransport, n: int, at: int = 0) -> list[Lease]:
    for i in range(at, at + n):
        queue.put(b"x", request_id=f"r{i}")
    leases = [transport.lease(wait=0) for _ in range(n)]
    assert all(lease is not None for lease in leases)
    return [lease for lease in leases if lease is not None]


def _ask_all(
    batcher: PermitBatcher, transport: MemoryTransport, asks: list[tuple[Lease, str]]
) -> list[Permit | Exception]:
    answers: list[Permit | Exception] = [TimeoutError()] * len(asks)

    def ask(n: int) -> None:
        lease, key = asks[n]
        try:
            answers[n] = BatchedPermitTransport(transport, batcher).permit(lease, key, ordered=True)
        except Exception as exc:  # noqa: BLE001  # the test compares what each got
            answers[n] = exc

    threads = [threading.Thread(target=ask, args=(0,))]
    threads[0].start()
    time.sleep(0.1)  # the first call is in flight: the others queue up
    threads += [threading.Thread(target=ask, args=(n,)) for n in range(1, len(asks))]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


def test_permits_asked_meanwhile_share_one_call_with_the_single_call_rules() -> None:
    queue = MemoryQueue()
    agent = _SlowPermits(queue, "a")
    first, second, third, fourth = _leases(queue, agent, 4)
    other = MemoryTransport(queue, "b")
    lost = Lease(fourth.lease_id, fourth.request_id, b"", fourth.expires_at)
    queue._release(fourth, "a")  # given back: b holds it now, a's lease is lost
    assert other.lease(wait=0) is not None
    answers = _ask_all(
        PermitBatcher(),
        agent,
        [(first, "A" * 64), (second, "B" * 64), (third, "B" * 64), (lost, "C" * 64)],
    )
    assert queue.permit_batches == [3]  # the first alone, the three asked meanwhile together
    decisions = [a.decision if isinstance(a, Permit) else type(a) for a in answers]
    # second and third write the same user: the older one is granted, the newer
    # waits (busy), exactly as two single calls in that order
    assert decisions == [
        PermitDecision.GRANTED,
        PermitDecision.GRANTED,
        PermitDecision.BUSY,
        LeaseLost,
    ]


def test_a_failed_call_fails_every_permit_in_it() -> None:
    queue = MemoryQueue()
    agent = _SlowPermits(queue, "a")
    leases = _leases(queue, agent, 3)
    batcher = PermitBatcher()
    agent.fail_next(TransportUnavailable("relay down"), times=1)  # the first, single call
    answers = _ask_all(batcher, agent, [(lease, f"{n}" * 64) for n, lease in enumerate(leases)])
    assert isinstance(answers[0], TransportUnavailable)
    assert all(isinstance(a, Permit) for a in answers[1:])
    more = _leases(queue, agent, 3, at=3)
    agent.fail_next(TransportUnavailable("relay down"), times=2)
    answers = _ask_all(batcher, agent, [(lease, f"{n + 5}" * 64) for n, lease in enumerate(more)])
    assert [type(a) for a in answers] == [TransportUnavailable] * 3
    assert answers[1] is not answers[2]  # each worker raises its own exception object
