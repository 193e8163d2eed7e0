"""PermitBatcher: permits asked while another permit call is in flight share the next
call, and each worker gets exactly the answer a single call would have given it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from agent.permit_batch import BatchedPermitTransport, PermitBatcher
from agent.transports.base import Lease, LeaseLost, Permit, TransportUnavailable
from agent.transports.memory import MemoryQueue, MemoryTransport
from wire.permits import PermitDecision


class _SlowPermits(MemoryTransport):
    """A single permit call takes a while (a relay under load)."""

    delay = 0.3

    def permit(
        self, lease: Lease, user_key: str, *, ordered: bool, marker: str | None = None
    ) -> Permit:
        time.sleep(self.delay)
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


def test_a_sender_waits_briefly_for_the_others_at_work_then_one_call_serves_them() -> None:
    queue = MemoryQueue()
    agent = MemoryTransport(queue, "a")
    leases = _leases(queue, agent, 3, at=100)
    batcher = PermitBatcher(working=lambda: 3, linger=2.0)
    answers: list[Permit | Exception] = []

    def ask(n: int) -> None:
        answers.append(BatchedPermitTransport(agent, batcher).permit(
            leases[n], f"{n}" * 64, ordered=True))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # each worker reaches its permit a little later
    for thread in threads:
        thread.join(10)
    assert queue.permit_batches == [3]  # no single call: the first one waited for company
    assert time.monotonic() - started < 1.5  # the third ask ended the wait, not the linger
    assert sorted(a.decision.value for a in answers if isinstance(a, Permit)) == ["granted"] * 3


def test_a_lone_request_asks_at_once() -> None:
    queue = MemoryQueue()
    agent = MemoryTransport(queue, "a")
    (lease,) = _leases(queue, agent, 1, at=200)
    batcher = PermitBatcher(working=lambda: 1, linger=5.0)
    started = time.monotonic()
    permit = BatchedPermitTransport(agent, batcher).permit(lease, "L" * 64, ordered=True)
    assert permit.decision is PermitDecision.GRANTED
    assert time.monotonic() - started < 1.0
    assert queue.permit_batches == []  # the single call


def test_the_wait_for_company_ends_after_the_linger() -> None:
    queue = MemoryQueue()
    agent = MemoryTransport(queue, "a")
    (lease,) = _leases(queue, agent, 1, at=300)
    batcher = PermitBatcher(working=lambda: 4, linger=0.2)  # the others never ask
    started = time.monotonic()
    permit = BatchedPermitTransport(agent, batcher).permit(lease, "M" * 64, ordered=True)
    assert permit.decision is PermitDecision.GRANTED
    assert 0.15 <= time.monotonic() - started < 2.0


class _SlowBatches(_SlowPermits):
    """Every call, single or batched, takes a little while, so asks pile up behind it."""

    delay = 0.01

    def permit_many(
        self, asks: Sequence[tuple[Lease, str, bool, str | None]]
    ) -> list[Permit | None]:
        time.sleep(self.delay)
        return super().permit_many(asks)


def test_forty_workers_at_once_each_get_their_own_answer_and_none_is_left_waiting() -> None:
    # More asks than one call carries (16): the calls follow one another, each asked by
    # the oldest ask still queued, until every worker has its answer.
    queue = MemoryQueue()
    agent = _SlowBatches(queue, "a")
    leases = _leases(queue, agent, 40, at=400)
    batcher = PermitBatcher(working=lambda: 40, linger=0.002)
    answers: dict[int, Permit | Exception] = {}
    go = threading.Barrier(40)

    def ask(n: int) -> None:
        go.wait()
        try:
            answers[n] = BatchedPermitTransport(agent, batcher).permit(
                leases[n], f"{n:02d}" * 32, ordered=True)
        except Exception as exc:  # noqa: BLE001  # the test checks what each got
            answers[n] = exc

    threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in range(40)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads)  # nobody left waiting
    assert sorted(answers) == list(range(40))
    for n, answer in answers.items():
        assert isinstance(answer, Permit), answer
        assert answer.decision is PermitDecision.GRANTED
        assert answer.lease.request_id == leases[n].request_id  # its own, not another's
    assert max(queue.permit_batches) <= 16


def test_while_the_directory_is_busy_permits_wait_for_company() -> None:
    """Three writes at the directory (depth 2): permits for it asked 0.2 s apart,
    longer than the linger, still share one call, sent once fewer than two writes are
    left; a permit for another directory is asked at once."""
    from agent.backlog import DirectoryBacklog

    queue = MemoryQueue()
    agent = MemoryTransport(queue, "a")
    leases = _leases(queue, agent, 3, at=400)
    backlog = DirectoryBacklog(2, most_hold=5.0, directories=["ad", "ldap"])
    backlog._dirs["ad"].pace = 5.0  # the hold is the cap
    writes = [backlog.write_started("ad") for _ in range(3)]
    batcher = PermitBatcher(working=lambda: 2, linger=0.0, backlog=backlog)
    answers: list[Permit] = []

    def ask(n: int, directory: str) -> None:
        backlog.routed(directory)
        answers.append(BatchedPermitTransport(agent, batcher).permit(
            leases[n], f"{n}" * 64, ordered=True))

    other = threading.Thread(target=ask, args=(2, "ldap"))
    other.start()
    other.join(2)
    assert not other.is_alive() and len(answers) == 1, "a permit for an idle directory waited"
    threads = [threading.Thread(target=ask, args=(n, "ad")) for n in range(2)]
    started = time.monotonic()
    threads[0].start()
    time.sleep(0.2)
    threads[1].start()
    time.sleep(0.2)
    assert queue.permit_batches == [] and len(answers) == 1, "asked while the directory was busy"
    backlog.write_ended(writes.pop())  # two left: still busy (the second ask is queued)
    backlog.write_ended(writes.pop())  # one left
    for thread in threads:
        thread.join(10)
    assert queue.permit_batches == [2]
    assert time.monotonic() - started < 2.0
    assert [a.decision.value for a in answers] == ["granted"] * 3
