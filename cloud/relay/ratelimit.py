"""Per-tenant limits, so one tenant (or one guesser) cannot starve the others.

- Rates (moving windows from the `limits` package, in this process's memory): submits
  and long-polls per tenant, enrollment attempts per client address and in total.
  Over the rate: 429 with Retry-After (seconds until the window has room again).
- Concurrency: at most `max_long_polls_per_tenant` open long-polls per tenant in this
  process, counted apart for the tenant's agents (lease polls) and its portals
  (result waits); the next one is answered 429 at once instead of holding a socket
  and a file descriptor. Apart, because with one count a burst of portal users
  waiting for their results took every slot, the agents' lease polls were refused,
  and nothing was served until the waits ran out. The long-poll rate is counted
  apart in the same way.

Why in memory: the limits protect this process's sockets and event loop; with N relay
replicas a tenant gets up to N times the rate, which is what N replicas can serve. A
shared store (the `limits` package speaks Redis and memcached) is the switch to make
if a global quota is ever wanted.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from cloud.relay.auth import RelayHTTPError

LongPollSide = Literal["agents", "portal"]


class _SweptMemoryStorage(MemoryStorage):
    """limits' MemoryStorage without its per-call expiry timer.

    Why: the stock storage starts a `threading.Timer` (a new thread) on a call when
    the previous timer has finished, which at relay request rates is nearly every
    call and cost ~3 ms of CPU per reset in bench/bench_relay_cpu.py. Here expired
    windows are swept by `sweep()`, which the app calls once a second; between sweeps
    a key holds at most its limit plus one second of entries.
    """

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the private hook
        pass

    def sweep(self) -> None:
        self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


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
        self._storage = _SweptMemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rates: dict[str, RateLimitItem] = {
            "submit": parse(submit_rate),
            "long_poll": parse(long_poll_rate),
            "enroll": parse(enroll_rate_per_client),
            "enroll_total": parse(enroll_rate_total),
        }
        self._max_long_polls = max_long_polls_per_tenant
        self._open_long_polls: Counter[str] = Counter()

    def sweep(self) -> None:
        """Forget expired windows (call about once a second)."""
        self._storage.sweep()

    async def hit(self, kind: str, key: str) -> None:
        """Count one `kind` call for `key`; RelayHTTPError(429) when over the rate."""
        item = self._rates[kind]
        if self._limiter.hit(item, kind, key):
            return
        stats = self._limiter.get_window_stats(item, kind, key)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise RelayHTTPError(
            429,
            "rate_limited",
            f"too many {kind.replace('_', ' ')} calls: at most {item}; retry in {retry}s",
            headers={"Retry-After": str(retry)},
        )

    async def enroll_attempt(self, client: str) -> None:
        await self.hit("enroll_total", "*")
        await self.hit("enroll", client)

    @asynccontextmanager
    async def long_poll(self, tenant: str, side: LongPollSide) -> AsyncIterator[None]:
        """Rate-count a long-poll and hold one of the concurrent slots of the tenant's
        `side` ("agents": lease polls; "portal": result waits)."""
        key = f"{side}:{tenant}"
        if self._open_long_polls[key] >= self._max_long_polls:
            raise RelayHTTPError(
                429,
                "too_many_long_polls",
                f"this tenant's {side} have {self._max_long_polls} long-polls open already",
                headers={"Retry-After": "1"},
            )
        await self.hit("long_poll", key)
        self._open_long_polls[key] += 1
        try:
            yield
        finally:
            self._open_long_polls[key] -= 1
            if self._open_long_polls[key] <= 0:
                del self._open_long_polls[key]

    def open_long_polls(self, tenant: str, side: LongPollSide) -> int:
        return self._open_long_polls[f"{side}:{tenant}"]
