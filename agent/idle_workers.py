"""Batch leasing's count of idle workers: the dispatcher takes tickets for the
workers it leases for, a worker gives its ticket back when its request is done.

Why the linger: with one lease call per freed worker, a busy agent makes about one
lease call per request. While other workers are still busy, requests keep coming
for them anyway, so the dispatcher waits a few milliseconds for more of them to
finish and leases for all of them in one call. A worker idle while nobody else is
busy is leased for at once: a lone request never waits (agent/poster.py lingers
the same way for results).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent.backlog import DirectoryBacklog, wait_while

# How long the dispatcher waits for more workers to finish while others are busy.
LEASE_LINGER = 0.005


class IdleWorkers:
    def __init__(
        self,
        workers: int,
        *,
        linger: float = LEASE_LINGER,
        backlog: DirectoryBacklog | None = None,
    ) -> None:
        self._workers = workers
        self._linger = linger
        self._cond = threading.Condition()
        self._free = workers
        self._backlog = backlog if backlog is not None else DirectoryBacklog(0)
        self._backlog.listen(self._cond)

    def take(self, most: int, timeout: float) -> int:
        """Tickets for up to `most` idle workers (0 when none became idle within
        `timeout`): all idle now, plus those that finish within the linger while
        others are still busy, plus, while every directory is busy (agent/backlog.py),
        those that finish before one is not or the hold is over."""
        most = min(most, self._workers)
        with self._cond:
            if not self._cond.wait_for(lambda: self._free > 0, timeout):
                return 0
            first = time.monotonic()
            self._gather(most, first + self._linger, lambda: True)
            backlog = self._backlog
            if self._gather(most, first + backlog.hold(), backlog.busy_everywhere):
                # The worker whose write ended the hold is idle a moment later.
                idle = self._free
                self._gather(most, time.monotonic() + self._linger, lambda: self._free == idle)
            tickets = min(most, self._free)
            self._free -= tickets
            return tickets

    def _gather(self, most: int, until: float, still: Callable[[], bool]) -> bool:
        """With the lock held: wait until `most` are idle, `until`, or `still()` fails;
        whether it waited at all."""
        return wait_while(self._cond, until, lambda: self._free < most and still())

    def give(self, n: int = 1) -> None:
        """`n` workers are idle again (or tickets taken were not used)."""
        if n > 0:
            with self._cond:
                self._free += n
                self._cond.notify_all()
