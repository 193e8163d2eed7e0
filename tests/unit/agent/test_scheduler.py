"""The scheduler runs its jobs on time, at start where promised, and survives failures.

Intervals are 0.1 s and every wait is bounded, so a broken scheduler fails the test
in seconds instead of hanging it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.scheduler import AgentScheduler

FAST = 0.1
SLOW = 3600.0  # never fires during a test


class _Counter:
    """A job that counts its runs and lets a test wait for the n-th one."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.runs = 0
        self.fail_with = fail_with
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.runs += 1
            self._cond.notify_all()
        if self.fail_with is not None:
            raise self.fail_with

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.runs >= n, timeout=timeout)


@pytest.fixture
def make() -> Iterator[Callable[..., AgentScheduler]]:
    created: list[AgentScheduler] = []

    def factory(**overrides: Any) -> AgentScheduler:
        kwargs: dict[str, Any] = {
            "heartbeat": _Counter(),
            "heartbeat_interval": SLOW,
            "health_probe": _Counter(),
            "health_probe_interval": SLOW,
            "prune_journal": _Counter(),
            "prune_interval": SLOW,
            "check_key_expiry": _Counter(),
            "key_expiry_interval": SLOW,
        }
        kwargs.update(overrides)
        scheduler = AgentScheduler(**kwargs)
        created.append(scheduler)
        return scheduler

    yield factory
    for scheduler in created:
        scheduler.shutdown(wait=True)


def test_heartbeat_probe_and_key_check_run_at_start_prune_does_not(
    make: Callable[..., AgentScheduler],
) -> None:
    heartbeat, probe, keys, prune = _Counter(), _Counter(), _Counter(), _Counter()
    scheduler = make(
        heartbeat=heartbeat, health_probe=probe, check_key_expiry=keys, prune_journal=prune
    )
    scheduler.start()
    assert heartbeat.wait_for(1)
    assert probe.wait_for(1)
    assert keys.wait_for(1)
    time.sleep(0.3)
    assert prune.runs == 0  # first prune only after one (long) interval


def test_jobs_repeat_at_their_interval(make: Callable[..., AgentScheduler]) -> None:
    prune = _Counter()
    scheduler = make(prune_journal=prune, prune_interval=FAST)
    started = time.monotonic()
    scheduler.start()
    assert prune.wait_for(3)
    assert time.monotonic() - started < 3.0


def test_a_raising_job_is_logged_and_does_not_stop_the_scheduler(
    make: Callable[..., AgentScheduler],
) -> None:
    failing = _Counter(fail_with=ConnectionError("relay said password=Hunter2-secret"))
    heartbeat = _Counter()
    scheduler = make(
        heartbeat=heartbeat,
        heartbeat_interval=FAST,
        health_probe=failing,
        health_probe_interval=FAST,
    )
    with capture_logs() as logs:
        scheduler.start()
        assert failing.wait_for(3)  # it keeps being scheduled after failing
        before = heartbeat.runs
        assert heartbeat.wait_for(before + 2)  # and the other jobs keep running
        assert scheduler.running
        scheduler.shutdown(wait=True)

    failures = [e for e in logs if e["event"] == "job.failed"]
    assert len(failures) >= 3
    first = failures[0]
    assert first["log_level"] == "error"
    assert first["job"] == "health_probe"
    assert first["error_type"] == "ConnectionError"
    assert first["error"] == "relay said password=[redacted]"
    assert not any("Hunter2" in repr(e) for e in logs)


def test_shutdown_stops_the_runs_and_is_idempotent(make: Callable[..., AgentScheduler]) -> None:
    heartbeat = _Counter()
    scheduler = make(heartbeat=heartbeat, heartbeat_interval=FAST)
    scheduler.shutdown()  # before start: nothing to do
    scheduler.start()
    assert heartbeat.wait_for(2)
    scheduler.shutdown(wait=True)
    assert not scheduler.running
    runs = heartbeat.runs
    time.sleep(0.35)
    assert heartbeat.runs == runs
    scheduler.shutdown()


def test_shutdown_waits_for_a_running_job(make: Callable[..., AgentScheduler]) -> None:
    entered, finished = threading.Event(), threading.Event()

    def slow_probe() -> None:
        entered.set()
        time.sleep(0.3)
        finished.set()

    scheduler = make(health_probe=slow_probe)
    scheduler.start()
    assert entered.wait(5)
    scheduler.shutdown(wait=True)
    assert finished.is_set()


def test_a_slow_job_does_not_pile_up(make: Callable[..., AgentScheduler]) -> None:
    active = 0
    most = 0
    lock = threading.Lock()
    done = _Counter()

    def slow() -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.35)  # longer than three intervals
        with lock:
            active -= 1
        done()

    scheduler = make(heartbeat=slow, heartbeat_interval=FAST)
    scheduler.start()
    assert done.wait_for(2)
    assert most == 1


def test_start_twice_is_refused(make: Callable[..., AgentScheduler]) -> None:
    scheduler = make()
    scheduler.start()
    with pytest.raises(RuntimeError, match="already started"):
        scheduler.start()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_intervals_must_be_positive_and_finite(
    make: Callable[..., AgentScheduler], bad: float
) -> None:
    with pytest.raises(ValueError, match="prune_journal interval"):
        make(prune_interval=bad)
