"""Batch leasing's idle-worker count: a lone idle worker is leased for at once; while
others are busy, the workers that finish within the linger share one lease call."""

from __future__ import annotations

import threading
import time

from agent.idle_workers import IdleWorkers, InHand


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


def test_a_lone_request_holds_the_next_call_until_its_write_starts() -> None:
    idle = IdleWorkers(4, linger=0.01, lone_wait=5.0)
    assert idle.take(4, timeout=1.0) == 4
    idle.give(3)  # three leased for nothing came back: one request in hand
    timer = threading.Timer(0.2, idle.writing)
    started = time.monotonic()
    timer.start()
    try:
        assert idle.take(4, timeout=1.0) == 3
    finally:
        timer.join()
    assert 0.15 <= time.monotonic() - started < 2.0  # past the linger, up to the write


def test_a_lone_request_that_ends_without_a_write_frees_its_ticket_for_the_call() -> None:
    idle = IdleWorkers(4, linger=0.01, lone_wait=5.0)
    assert idle.take(4, timeout=1.0) == 4
    idle.give(3)
    timer = threading.Timer(0.2, idle.give)  # answered from the journal, say
    started = time.monotonic()
    timer.start()
    try:
        assert idle.take(4, timeout=1.0) == 4
    finally:
        timer.join()
    assert time.monotonic() - started < 2.0


def test_a_lone_request_stuck_before_its_write_holds_the_call_at_most_lone_wait() -> None:
    idle = IdleWorkers(4, linger=0.01, lone_wait=0.2)
    assert idle.take(4, timeout=1.0) == 4
    idle.give(3)
    started = time.monotonic()
    assert idle.take(4, timeout=1.0) == 3
    assert 0.15 <= time.monotonic() - started < 2.0


def test_with_two_in_hand_a_write_does_not_cut_the_linger_short() -> None:
    idle = IdleWorkers(4, linger=0.3, lone_wait=5.0)
    assert idle.take(4, timeout=1.0) == 4
    idle.give(2)  # two requests in hand
    idle.writing()  # one of them writes: the other may still finish within the linger
    timer = threading.Timer(0.1, lambda: idle.give(wrote=True))
    started = time.monotonic()
    timer.start()
    try:
        assert idle.take(4, timeout=1.0) == 3  # the one that finished joined the call
    finally:
        timer.join()
    assert 0.25 <= time.monotonic() - started < 2.0  # the linger ran out, as before


def test_a_request_that_wrote_and_ended_no_longer_counts_as_writing() -> None:
    idle = IdleWorkers(2, linger=0.01, lone_wait=0.2)
    assert idle.take(2, timeout=1.0) == 2
    idle.give()  # one in hand
    hand = InHand(idle)
    hand.writing()
    hand.writing()  # said twice, counted once
    assert idle.take(2, timeout=1.0) == 1  # at its write: the call goes at once
    hand.done()  # the ticket just taken is the request in hand now; it has not written
    started = time.monotonic()
    assert idle.take(2, timeout=1.0) == 1
    assert time.monotonic() - started >= 0.15  # held: the ended write no longer counts
