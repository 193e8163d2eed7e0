"""A small time-bounded cache, one per connector (so per worker thread): no module-level
state, no locking. Used for password policies, which change rarely and were read for
every request (two extra round trips per reset on AD)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """`get(key, load)` returns the value loaded less than `seconds` ago, or loads it.
    `seconds <= 0` caches nothing. Failed loads are not cached."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._items: dict[str, tuple[float, T]] = {}

    def get(self, key: str, load: Callable[[], T]) -> T:
        now = self._clock()
        hit = self._items.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        value = load()
        if self._seconds > 0:
            self._items[key] = (now + self._seconds, value)
        return value

    def clear(self) -> None:
        self._items.clear()
