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

# How long the dispatcher waits for more workers to finish while others are busy.
LEASE_LINGER = 0.005


class IdleWorkers:
    def __init__(self, workers: int, *, linger: float = LEASE_LINGER) -> None:
        self._workers = workers
        self._linger = linger
        self._free = threading.Semaphore(workers)

    def take(self, most: int, timeout: float) -> int:
        """Tickets for up to `most` idle workers (0 when none became idle within
        `timeout`): all idle now, plus those that finish within the linger while
        others are still busy."""
        if not self._free.acquire(timeout=timeout):
            return 0
        tickets = 1
        while tickets < most and self._free.acquire(blocking=False):
            tickets += 1
        until = time.monotonic() + self._linger
        while tickets < min(most, self._workers):  # someone is still busy
            left = until - time.monotonic()
            if left <= 0 or not self._free.acquire(timeout=left):
                break
            tickets += 1
        return tickets

    def give(self, n: int = 1) -> None:
        """`n` workers are idle again (or tickets taken were not used)."""
        if n > 0:
            self._free.release(n)
