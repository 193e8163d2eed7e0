"""The agent's periodic housekeeping on an APScheduler 3.x BackgroundScheduler.

Five jobs, each a zero-argument callable the service builds (so this module knows
nothing about relays, directories or journals):

    job               runs at start   what it is for
    ----------------  --------------  -------------------------------------------------
    heartbeat         yes             tell the relay this agent is online
    health_probe      yes             probe relay and directories, update HealthState
    check_key_expiry  yes             warn (key.expiring) and set the expiry gauges
    prune_journal     no              drop old journal rows; can wait, startup should not
    trim_memory       no              give freed heap back once idle (agent/malloc.py)

Why these settings:

- UTC, so a DST change neither skips nor doubles a run.
- coalesce=True: after a suspend or a long GC pause, one catch-up run, not a burst.
- max_instances=1: a heartbeat stuck behind a slow relay must not pile up threads;
  APScheduler logs the skipped run as a warning.
- misfire_grace_time = one interval (at least 1 s): a run that is late by less than
  that still happens; anything later is skipped and the next one comes on schedule.
- A job that raises is logged as ``job.failed`` (job, error_type, scrubbed error)
  and the scheduler keeps running: one failed probe must not end the probing. The
  traceback is left out: these fail repeatedly while a dependency is down, and one
  line per failure is what an operator can read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.logging import get_logger, scrub_text

__all__ = ["AgentScheduler"]

_log = get_logger(__name__)

Job = Callable[[], None]


def _guarded(name: str, func: Job) -> Job:
    """Run `func`, turning an exception into one log line instead of an APScheduler trace."""

    def run() -> None:
        try:
            func()
        except Exception as exc:  # noqa: BLE001  # logged; the next run retries
            _log.error(
                "job.failed",
                job=name,
                error_type=type(exc).__name__,
                error=scrub_text(str(exc)),
            )

    run.__name__ = run.__qualname__ = name
    return run


class AgentScheduler:
    """Owns one BackgroundScheduler; `start()` once, `shutdown()` when stopping."""

    def __init__(
        self,
        *,
        heartbeat: Job,
        heartbeat_interval: float,
        health_probe: Job,
        health_probe_interval: float,
        prune_journal: Job,
        prune_interval: float,
        check_key_expiry: Job,
        key_expiry_interval: float,
        trim_memory: Job | None = None,
        trim_interval: float = 3.0,
    ) -> None:
        # name -> (callable, interval seconds, run once at start)
        self._jobs: dict[str, tuple[Job, float, bool]] = {
            "heartbeat": (heartbeat, heartbeat_interval, True),
            "health_probe": (health_probe, health_probe_interval, True),
            "check_key_expiry": (check_key_expiry, key_expiry_interval, True),
            "prune_journal": (prune_journal, prune_interval, False),
        }
        if trim_memory is not None:
            self._jobs["trim_memory"] = (trim_memory, trim_interval, False)
        for name, (_, interval, _) in self._jobs.items():
            if not (math.isfinite(interval) and interval > 0):
                raise ValueError(f"{name} interval must be a positive number of seconds")
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            # One thread per job is enough: max_instances=1 means never more at once.
            executors={"default": ThreadPoolExecutor(max_workers=len(self._jobs))},
            job_defaults={"coalesce": True, "max_instances": 1},
            daemon=True,
        )

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        if self._scheduler.running:
            raise RuntimeError("scheduler already started")
        now = datetime.now(UTC)
        for name, (func, interval, at_start) in self._jobs.items():
            self._scheduler.add_job(
                _guarded(name, func),
                IntervalTrigger(seconds=interval, timezone=UTC),
                id=name,
                name=name,
                misfire_grace_time=max(1, math.ceil(interval)),
                replace_existing=True,
                # Omitting next_run_time means "first run after one interval".
                **({"next_run_time": now} if at_start else {}),
            )
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with `wait`, let running jobs finish. Safe to call twice."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
