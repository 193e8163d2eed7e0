"""Per-tenant limits, so one tenant (or one guesser) cannot starve the others.

- Rates (moving windows in this process's memory, written in the `limits` package's
  notation, "500/second"): submits and long-polls per tenant, enrollment attempts per
  client address and in total.
  Over the rate: 429 with Retry-After (seconds until the window has room again).
- Concurrency: at most `max_long_polls_per_tenant` open long-polls (agent leases and
  portal result waits) per tenant in this process; the next one is answered 429 at
  once instead of holding a socket and a file descriptor.

Why in memory: the limits protect this process's sockets and event loop; with N relay
replicas a tenant gets up to N times the rate, which is what N replicas can serve. A
shared store (the `limits` package's storages speak Redis and memcached) is the switch
to make if a global quota is ever wanted.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from limits import RateLimitItem, parse

from cloud.relay.auth import RelayHTTPError


class _MovingWindows:
    """Moving-window counts, as limits' MovingWindowRateLimiter keeps them: per key the
    times of the hits still inside the window, oldest first; a hit is refused while
    `limit` of them are.

    Why not limits' own storage: its MemoryStorage takes a lock, builds an entry
    object and shifts the key's whole list for every hit, and starts a timer thread
    on a call when the previous one has finished (about 3 ms of CPU per reset in
    bench/bench_relay_cpu.py, until a subclass switched it off). Here a hit is a
    deque append; expired hits leave at the next hit of their key, and keys nobody
    hits any more at `sweep()`, which the app calls once a second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def hit(self, kind: str, key: str, limit: int, window: float) -> float | None:
        """Count a hit. None: within the limit; else the seconds until the oldest hit
        in the window leaves it (the hit was not counted)."""
        now = self._clock()
        hits = self._hits.get((kind, key))
        if hits is None:
            hits = self._hits[(kind, key)] = deque()
        cutoff = now - window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] + window - now
        hits.append(now)
        return None

    def sweep(self, windows: dict[str, float]) -> None:
        """Forget the keys whose hits have all left their window."""
        now = self._clock()
        for name in [n for n, h in self._hits.items() if not h or h[-1] <= now - windows[n[0]]]:
            del self._hits[name]


class TenantLimits:
    def __init__(
        self,
        *,
        submit_rate: str,
        long_poll_rate: str,
        enroll_rate_per_client: str,
        enroll_rate_total: str,
        max_long_polls_per_tenant: int,
    ) -> None:
        self._windows = _MovingWindows()
        self._rates: dict[str, RateLimitItem] = {
            "submit": parse(submit_rate),
            "long_poll": parse(long_poll_rate),
            "enroll": parse(enroll_rate_per_client),
            "enroll_total": parse(enroll_rate_total),
        }
        # (most hits, window in seconds) per kind
        self._limits = {k: (r.amount, float(r.get_expiry())) for k, r in self._rates.items()}
        self._max_long_polls = max_long_polls_per_tenant
        self._open_long_polls: Counter[str] = Counter()

    def sweep(self) -> None:
        """Forget expired windows (call about once a second)."""
        self._windows.sweep({k: window for k, (_, window) in self._limits.items()})

    async def hit(self, kind: str, key: str) -> None:
        """Count one `kind` call for `key`; RelayHTTPError(429) when over the rate."""
        limit, window = self._limits[kind]
        wait = self._windows.hit(kind, key, limit, window)
        if wait is None:
            return
        retry = max(1, math.ceil(wait))
        raise RelayHTTPError(
            429,
            "rate_limited",
            f"too many {kind.replace('_', ' ')} calls: at most {self._rates[kind]}; "
            f"retry in {retry}s",
            headers={"Retry-After": str(retry)},
        )

    async def enroll_attempt(self, client: str) -> None:
        await self.hit("enroll_total", "*")
        await self.hit("enroll", client)

    @asynccontextmanager
    async def long_poll(self, tenant: str) -> AsyncIterator[None]:
        """Rate-count a long-poll and hold one of the tenant's concurrent slots."""
        if self._open_long_polls[tenant] >= self._max_long_polls:
            raise RelayHTTPError(
                429,
                "too_many_long_polls",
                f"this tenant has {self._max_long_polls} long-polls open already",
                headers={"Retry-After": "1"},
            )
        await self.hit("long_poll", tenant)
        self._open_long_polls[tenant] += 1
        try:
            yield
        finally:
            self._open_long_polls[tenant] -= 1
            if self._open_long_polls[tenant] <= 0:
                del self._open_long_polls[tenant]

    def open_long_polls(self, tenant: str) -> int:
        return self._open_long_polls[tenant]
