"""Batch leasing's idle-worker count: a lone idle worker is leased for at once; while
others are busy, the workers that finish within the linger share one lease call."""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.backlog import DirectoryBacklog
from agent.idle_workers import IdleWorkers


def test_all_idle_are_taken_at_once_without_lingering() -> None:
    idle = IdleWorkers(4, linger=5.0)
    started = time.monotonic()
    assert idle.take(16, timeout=1.0) == 4
    assert time.monotonic() - started < 1.0  # nobody busy: no linger


def test_never_more_than_most() -> None:
    idle = IdleWorkers(8, linger=0.0)
    assert idle.take(3, timeout=1.0) == 3
    assert idle.take(16, timeout=1.0) == 5


def test_none_idle_within_the_timeout() -> None:
    idle = IdleWorkers(2, linger=0.0)
    assert idle.take(2, timeout=1.0) == 2
    started = time.monotonic()
    assert idle.take(2, timeout=0.05) == 0
    assert time.monotonic() - started < 1.0


def test_workers_finishing_during_the_linger_share_the_call() -> None:
    idle = IdleWorkers(4, linger=2.0)
    assert idle.take(4, timeout=1.0) == 4  # all four busy now
    idle.give()  # one finishes
    timer = threading.Timer(0.05, idle.give)  # a second one shortly after
    timer.start()
    try:
        assert idle.take(4, timeout=1.0) == 2
    finally:
        timer.join()


def test_linger_ends_after_its_time_when_nobody_else_finishes() -> None:
    idle = IdleWorkers(4, linger=0.05)
    assert idle.take(4, timeout=1.0) == 4
    idle.give()
    started = time.monotonic()
    assert idle.take(4, timeout=1.0) == 1
    assert 0.04 <= time.monotonic() - started < 1.0


def test_tickets_given_back_are_taken_again() -> None:
    idle = IdleWorkers(3, linger=0.0)
    assert idle.take(3, timeout=1.0) == 3
    idle.give(2)  # leased fewer than asked for
    assert idle.take(3, timeout=1.0) == 2


def _busy(writes: int, depth: int, most_hold: float) -> tuple[DirectoryBacklog, list[Any]]:
    backlog = DirectoryBacklog(depth, most_hold=most_hold, directories=["ad"])
    backlog._dirs["ad"].pace = most_hold  # the hold is the cap
    return backlog, [backlog.write_started("ad") for _ in range(writes)]


def test_while_the_directory_is_busy_idle_workers_are_gathered() -> None:
    """Three writes at the directory (depth 2): a worker freed now waits for the next
    one, and both are leased for together as soon as fewer than two writes are left,
    not after the 5 s hold."""
    backlog, writes = _busy(3, depth=2, most_hold=5.0)
    idle = IdleWorkers(4, linger=0.0, backlog=backlog)
    assert idle.take(4, timeout=1.0) == 4

    def second_finishes() -> None:
        backlog.write_ended(writes.pop())  # two left: still busy
        idle.give()
        time.sleep(0.1)
        backlog.write_ended(writes.pop())  # one left: not busy

    idle.give()
    timer = threading.Timer(0.1, second_finishes)
    started = time.monotonic()
    timer.start()
    try:
        assert idle.take(4, timeout=1.0) == 2
        assert 0.15 <= time.monotonic() - started < 2.0
    finally:
        timer.join()


def test_not_busy_means_no_hold() -> None:
    backlog, _writes = _busy(1, depth=2, most_hold=5.0)
    idle = IdleWorkers(4, linger=0.0, backlog=backlog)
    assert idle.take(4, timeout=1.0) == 4
    idle.give()
    started = time.monotonic()
    assert idle.take(4, timeout=1.0) == 1
    assert time.monotonic() - started < 1.0
