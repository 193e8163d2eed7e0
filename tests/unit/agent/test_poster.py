"""The result poster (relay.result_batch): results finished together share one call,
and each keeps the guarantees of posting one by one (journal marked only when the
relay took it, lease lost settled per result, retries until the lease is over)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.poster import ResultPoster
from agent.transports.base import Lease
from agent.transports.memory import MemoryQueue, MemoryTransport


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._add("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._add("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._add("error", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._add("exception", event, **kw)


class _NoBackoff:
    def __init__(self) -> None:
        self.waits = 0

    def wait(self) -> None:
        self.waits += 1
        time.sleep(0.02)


def _written(journal: Journal, lease: Lease, result: bytes) -> None:
    """The journal as the pipeline leaves it: written under `lease`, answer kept."""
    journal.claim(lease.request_id, op="reset", user_ref="u")
    journal.mark_writing(lease.request_id, lease_id=lease.lease_id)
    journal.finish(lease.request_id, status="succeeded", result=result)


def _leases(queue: MemoryQueue, transport: MemoryTransport, n: int) -> list[Lease]:
    for i in range(n):
        queue.put(b"{}", request_id=f"r-{i}")
    leases = [transport.lease(wait=1) for _ in range(n)]
    assert all(lease is not None for lease in leases)
    return [lease for lease in leases if lease is not None]


def _written_leases(
    tmp_path: Path, n: int, result: Any = b"ok"
) -> tuple[MemoryQueue, Journal, _Log, list[Lease]]:
    """A queue with `n` requests leased by agent "a" and written by it (journal as the
    pipeline leaves it); `result` is the answer, or a function of the lease."""
    queue = MemoryQueue()
    journal, log = Journal(tmp_path / "j.sqlite3"), _Log()
    leases = _leases(queue, MemoryTransport(queue, "a"), n)
    for lease in leases:
        _written(journal, lease, result(lease) if callable(result) else result)
    return queue, journal, log, leases


def _poster(
    transport: MemoryTransport,
    journal: Journal,
    log: _Log,
    *,
    working: Any = lambda: 0,
    stopping: Any = lambda: False,
    linger: float = 0.005,
) -> ResultPoster:
    poster = ResultPoster(
        lambda: transport,
        journal,
        log,
        stopping=stopping,
        working=working,
        backoff=_NoBackoff,
        linger=linger,
    )
    poster.start()
    return poster


def _post_all(poster: ResultPoster, items: list[tuple[Lease, bytes]], before: Any = None) -> None:
    def post(lease: Lease, result: bytes) -> None:
        if before is not None:
            before()
        poster.post(lease, result)

    threads = [threading.Thread(target=post, args=item) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "post() did not return"


def test_results_finished_together_go_in_one_call(tmp_path: Path) -> None:
    queue, journal, log, leases = _written_leases(
        tmp_path, 3, lambda lease: f"answer {lease.request_id}".encode()
    )
    busy = [3]
    lock = threading.Lock()

    def finished() -> None:
        with lock:
            busy[0] -= 1

    poster = _poster(MemoryTransport(queue, "a"), journal, log, working=lambda: busy[0], linger=5)
    _post_all(
        poster, [(lease, f"answer {lease.request_id}".encode()) for lease in leases], finished
    )
    # Posted well before the 5 s linger: nothing was left in work.
    assert poster.settled(timeout=3), "lingered although no request was left in work"
    assert queue.batch_posts == [3]
    for lease in leases:
        assert (
            queue.wait_result(lease.request_id, timeout=1) == f"answer {lease.request_id}".encode()
        )
    assert journal.unposted(600) == []  # every one acknowledged
    poster.close(5)


def test_a_worker_goes_on_while_its_result_is_posted(tmp_path: Path) -> None:
    """post() returns before the relay has the answer; the journal keeps it until then,
    and a worker waits only while `most` results are unsettled."""
    queue, journal, log, leases = _written_leases(tmp_path, 3)
    posting = MemoryTransport(queue, "a")
    posting.fail_next(times=10)  # the relay does not answer for a while
    poster = ResultPoster(lambda: posting, journal, log, stopping=lambda: False,
                          working=lambda: 0, backoff=_NoBackoff, most=2)
    poster.start()
    started = time.monotonic()
    poster.post(leases[0], b"ok")
    poster.post(leases[1], b"ok")
    assert time.monotonic() - started < 0.1, "post() waited for the relay"
    assert {r[0] for r in journal.unposted(600)} == {lease.request_id for lease in leases}
    third = threading.Thread(target=poster.post, args=(leases[2], b"ok"))
    third.start()
    time.sleep(0.1)
    assert third.is_alive(), "a third result was queued past most=2 unsettled"
    third.join(10)
    assert not third.is_alive()
    poster.close(5)
    for lease in leases:
        assert queue.wait_result(lease.request_id, timeout=1) == b"ok"
    assert journal.unposted(600) == []


def test_close_posts_what_was_handed_over(tmp_path: Path) -> None:
    queue, journal, log, leases = _written_leases(tmp_path, 3)
    # A long linger with work "in progress": only close() makes the poster post now.
    poster = _poster(MemoryTransport(queue, "a"), journal, log, working=lambda: 1, linger=30)
    for lease in leases:
        poster.post(lease, b"ok")
    started = time.monotonic()
    poster.close(5)
    assert time.monotonic() - started < 3
    for lease in leases:
        assert queue.wait_result(lease.request_id, timeout=1) == b"ok"
    assert journal.unposted(600) == []


def test_a_lost_lease_is_settled_for_that_result_only(tmp_path: Path) -> None:
    queue = MemoryQueue(lease_timeout=0.2)
    mine, other = MemoryTransport(queue, "a"), MemoryTransport(queue, "b")
    journal, log = Journal(tmp_path / "j.sqlite3"), _Log()
    kept, lost = _leases(queue, mine, 2)
    time.sleep(0.3)  # both leases time out; b takes one and answers it
    taken = other.lease(wait=1)
    assert taken is not None and taken.request_id == kept.request_id
    other.complete(taken, b"b's answer")
    again = mine.lease(wait=1)
    assert again is not None and again.request_id == lost.request_id
    for lease in (kept, again):
        _written(journal, lease, b"a's answer")
    poster = _poster(MemoryTransport(queue, "a"), journal, log)
    _post_all(poster, [(kept, b"a's answer"), (again, b"a's answer")])
    poster.close(5)
    assert queue.wait_result(kept.request_id, timeout=1) == b"b's answer"
    assert queue.wait_result(again.request_id, timeout=1) == b"a's answer"
    assert journal.unposted(600) == []  # lease lost: another answer is stored, never resend
    assert (
        "info",
        "result.not_posted",
        {"request_id": kept.request_id, "detail": "lease lost"},
    ) in (log.events)


def test_an_unreachable_relay_is_retried_and_later_results_join(tmp_path: Path) -> None:
    queue, journal, log, (first, second) = _written_leases(tmp_path, 2)
    posting = MemoryTransport(queue, "a")
    posting.fail_next(times=5)
    poster = _poster(posting, journal, log)
    threads = [threading.Thread(target=poster.post, args=(first, b"ok"))]
    threads[0].start()
    time.sleep(0.05)  # the first call failed; the poster is retrying
    threads.append(threading.Thread(target=poster.post, args=(second, b"ok")))
    threads[1].start()
    for t in threads:
        t.join(10)
    poster.close(5)
    assert queue.wait_result(first.request_id, timeout=1) == b"ok"
    assert queue.wait_result(second.request_id, timeout=1) == b"ok"
    assert queue.batch_posts == [2]  # the retry carried both
    assert journal.unposted(600) == []


def test_gives_up_when_the_lease_is_over_and_keeps_the_answer(tmp_path: Path) -> None:
    queue, journal, log, (lease,) = _written_leases(tmp_path, 1)
    posting = MemoryTransport(queue, "a")
    posting.fail_next(times=10_000)  # the relay never answers
    short = Lease(lease.lease_id, lease.request_id, b"", time.time() + 0.3)
    poster = _poster(posting, journal, log, stopping=lambda: True)  # no late-post window
    poster.post(short, b"ok")
    assert poster.settled(timeout=3), "still retrying after the lease was over"
    poster.close(5)
    assert [r[0] for r in journal.unposted(600)] == [lease.request_id]  # reposted at restart
    assert any(e[1] == "result.not_posted" and e[0] == "warning" for e in log.events)


def _busy_backlog(writes: int, depth: int = 2, most_hold: float = 5.0) -> tuple[Any, list[Any]]:
    """Directory "ad" with `writes` writes queued; its hold is the cap."""
    from agent.backlog import DirectoryBacklog

    backlog = DirectoryBacklog(depth, most_hold=most_hold, directories=["ad"])
    backlog._dirs["ad"].pace = most_hold
    return backlog, [backlog.write_started("ad") for _ in range(writes)]


def _post_for(backlog: Any, poster: ResultPoster, lease: Lease, directory: str | None) -> None:
    """Posted from a worker thread that worked for `directory`."""
    def post() -> None:
        backlog.routed(directory)
        poster.post(lease, b"ok")

    thread = threading.Thread(target=post)
    thread.start()
    thread.join(5)


def _busy_poster(
    tmp_path: Path, n: int, backlog: Any, linger: float = 0.005
) -> tuple[Any, Journal, ResultPoster, list[Lease]]:
    queue, journal, log, leases = _written_leases(tmp_path, n)
    transport = MemoryTransport(queue, "a")
    poster = ResultPoster(lambda: transport, journal, log, stopping=lambda: False,
                          working=lambda: 0, backoff=_NoBackoff, backlog=backlog, linger=linger)
    poster.start()
    return queue, journal, poster, leases


def test_while_the_directory_is_busy_a_result_waits_for_the_next(tmp_path: Path) -> None:
    """Three writes queued at the directory (depth 2): a finished result waits for the
    next write's result and both go in one call; once fewer than two writes are left
    the poster waits only for the result of the write that ended the hold (up to its
    linger), well before its 5 s hold is over."""
    backlog, writes = _busy_backlog(3)
    queue, journal, poster, leases = _busy_poster(tmp_path, 2, backlog, linger=0.5)
    started = time.monotonic()
    backlog.write_ended(writes.pop())  # the first write ends: still two at the directory
    _post_for(backlog, poster, leases[0], "ad")
    time.sleep(0.2)
    assert queue.batch_posts == [], "posted alone while the directory was busy"
    backlog.write_ended(writes.pop())  # the second ends: one left, not busy any more
    _post_for(backlog, poster, leases[1], "ad")
    assert poster.settled(timeout=3)
    assert time.monotonic() - started < 2.0, "waited out the hold although not busy"
    assert queue.batch_posts == [2]
    assert journal.unposted(600) == []
    poster.close(5)


def test_a_result_of_another_directory_is_not_held(tmp_path: Path) -> None:
    backlog, _writes = _busy_backlog(4)  # "ad" stays busy
    queue, _journal, poster, leases = _busy_poster(tmp_path, 1, backlog)
    started = time.monotonic()
    _post_for(backlog, poster, leases[0], "ldap")
    assert poster.settled(timeout=3)
    assert time.monotonic() - started < 1.0
    assert queue.wait_result(leases[0].request_id, timeout=1) == b"ok"
    poster.close(5)


def test_a_result_held_while_busy_goes_when_the_hold_is_over(tmp_path: Path) -> None:
    backlog, _writes = _busy_backlog(4, most_hold=0.3)  # stays busy
    queue, _journal, poster, leases = _busy_poster(tmp_path, 1, backlog)
    started = time.monotonic()
    _post_for(backlog, poster, leases[0], "ad")
    assert poster.settled(timeout=3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert queue.wait_result(leases[0].request_id, timeout=1) == b"ok"
    poster.close(5)


def test_a_stopping_agent_does_not_hold_its_results(tmp_path: Path) -> None:
    backlog, _writes = _busy_backlog(4, most_hold=30.0)
    queue, _journal, poster, leases = _busy_poster(tmp_path, 1, backlog)
    _post_for(backlog, poster, leases[0], "ad")
    started = time.monotonic()
    poster.close(5)
    assert time.monotonic() - started < 3
    assert queue.wait_result(leases[0].request_id, timeout=1) == b"ok"
