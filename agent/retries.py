"""Retrying: directory calls within a request's deadline, and `Backoff` for the
calls to the relay (lease polls, result posts).

Reads are retried across DCs with backoff whenever the directory is unavailable.
Writes are retried only when the fault proves nothing was sent
(`DirectoryUnavailable.write_sent is False`); otherwise the fault goes up and the
pipeline answers in_doubt rather than risk writing twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from connectors.base import DirectoryUnavailable

T = TypeVar("T")

_FIRST_DELAY = 0.25
_MAX_DELAY = 4.0


def retry_reads(call: Callable[[], T], deadline: float, sleep: Callable[[float], None]) -> T:
    """Retry reads across DCs with backoff until the request's deadline."""
    delay = _FIRST_DELAY
    while True:
        try:
            return call()
        except DirectoryUnavailable:
            if time.time() + delay >= deadline:
                raise
            sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)


def retry_unsent(call: Callable[[], T], deadline: float, sleep: Callable[[float], None]) -> T:
    """Retry a write only when the fault proves nothing was sent; otherwise the
    caller reports in_doubt rather than risk writing twice."""
    delay = _FIRST_DELAY
    while True:
        try:
            return call()
        except DirectoryUnavailable as exc:
            if exc.write_sent is not False or time.time() + delay >= deadline:
                raise
            sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)


class Backoff:
    """Exponential backoff with full jitter; `wait` returns early when stopping."""

    def __init__(self, stop: threading.Event, *, base: float = 0.5, cap: float = 30.0) -> None:
        self._stop = stop
        self._base = base
        self._cap = cap
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def wait(self) -> None:
        delay = min(self._cap, self._base * 2**self._attempt)
        self._attempt += 1
        self._stop.wait(random.uniform(delay / 2, delay))  # noqa: S311 (jitter, not crypto)
