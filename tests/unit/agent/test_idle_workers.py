"""Batch leasing's idle-worker count: a lone idle worker is leased for at once; while
others are busy, the workers that finish within the linger share one lease call."""

from __future__ import annotations

import threading
import time

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
