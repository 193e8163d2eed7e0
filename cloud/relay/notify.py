"""In-process wake-ups for long-polls.

A long-poll waits on a key ("group:<tenant>/<group>" for agents, "request:<tenant>/<id>"
for the portal) until someone on this replica notifies it, or until its re-check
interval passes. The wake-up is only a shortcut: correctness comes from re-reading
the store, which is what makes several replicas on one database work. All calls
happen on the event loop thread, so no locks are needed.

A store shared by several replicas (PostgreSQL) also implements `SharedWakeups`: it
announces the keys of what it stores to every replica (LISTEN/NOTIFY), and the app
feeds them into its Notifier, so a long-poll on one replica wakes when another one
stores the request or result it waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable


@runtime_checkable
class SharedWakeups(Protocol):
    def listen(self, on_key: Callable[[str], None]) -> Callable[[], None]:
        """Call `on_key` (from any thread) with the key of every wake-up any replica
        sends; return the function that stops listening."""
        ...


def group_key(tenant: str, agent_group: str) -> str:
    return f"group:{tenant}/{agent_group}"


def request_key(tenant: str, request_id: str) -> str:
    return f"request:{tenant}/{request_id}"


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    async def wait(self, key: str, timeout: float) -> bool:
        """Sleep until notified or `timeout` passes; True when notified."""
        return await self.wait_any((key,), timeout)

    async def wait_any(self, keys: Iterable[str], timeout: float) -> bool:
        """Sleep until any of `keys` is notified or `timeout` passes; True when notified."""
        event = asyncio.Event()
        keys = list(keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[key]

    def notify(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def waiting(self, key: str) -> int:
        return len(self._waiters.get(key, ()))
