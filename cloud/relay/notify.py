"""In-process wake-ups for long-polls.

A long-poll waits on a key ("group:<tenant>/<group>" for agents, "request:<tenant>/<id>"
for the portal) until someone on this replica notifies it, or until its re-check
interval passes. The wake-up is only a shortcut: correctness comes from re-reading
the store, which is what makes several replicas on one database work. All calls
happen on the event loop thread, so no locks are needed.

Who is woken: a submit stores one request, which one lease poll can take, so it
wakes one waiter of its group (`notify(key, 1)`), the one waiting longest; N
submits wake N. Waking every poll of the group made each of them lease, and all but
one find nothing: a store call each, per submit. A stored result wakes every poll
waiting for that request (`notify(key)`). A woken waiter that does not look (its
client went away, its task was cancelled) passes its wake-up on to the next waiter
(`pass_on`; the cancelled case is handled here), so no request waits for the
re-check interval because its wake-up went to a poll nobody reads any more.

A store shared by several replicas (PostgreSQL) also implements `SharedWakeups`: it
announces the keys of what it stores to every replica (LISTEN/NOTIFY), and the app
feeds them into its Notifier (`notify_stored`), so a long-poll on one replica wakes
when another one stores the request or result it waits for.
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


_GROUP = "group:"


async def woken_first() -> None:
    """Yield once, so the long-polls a call has just woken answer before the call
    answers its own caller: the portal waiting for a result hears it before the agent
    that posted it hears "stored". One pass of the event loop: a woken waiter's first
    step (its store read on SQLite, its answer) was scheduled first."""
    await asyncio.sleep(0)


def group_key(tenant: str, agent_group: str) -> str:
    return f"{_GROUP}{tenant}/{agent_group}"


def request_key(tenant: str, request_id: str) -> str:
    return f"request:{tenant}/{request_id}"


class Notifier:
    def __init__(self) -> None:
        # key -> its waiters, oldest first (a dict as an ordered set). A waiter is a
        # future: done (with a result) once woken.
        self._waiters: dict[str, dict[asyncio.Future[None], None]] = {}

    async def wait(self, key: str, timeout: float) -> bool:
        """Sleep until notified or `timeout` passes; True when notified."""
        return await self.wait_any((key,), timeout)

    async def wait_any(self, keys: Iterable[str], timeout: float) -> bool:
        """Sleep until any of `keys` is notified or `timeout` passes; True when notified
        (also when the wake-up and the timeout came together)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(keys)
        for key in keys:
            self._waiters.setdefault(key, {})[waiter] = None
        cancelled = False
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await waiter
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.pop(waiter, None)
                    if not waiters:
                        del self._waiters[key]
            woken = waiter.done() and not waiter.cancelled()
            if woken and cancelled:
                for key in keys:  # woken, but nobody will look: the next one should
                    self.pass_on(key)
        return woken

    def notify(self, key: str, most: int | None = None) -> None:
        """Wake the `most` longest waiting waiters of `key` (every one when None)."""
        left = most
        for waiter in self._waiters.get(key, ()):
            if left is not None and left <= 0:
                return
            if not waiter.done():
                waiter.set_result(None)
                if left is not None:
                    left -= 1

    def pass_on(self, key: str) -> None:
        """A woken waiter will not look after all: wake the next one in its place."""
        self.notify(key, 1 if key.startswith(_GROUP) else None)

    def notify_stored(self, key: str) -> None:
        """One thing was stored under `key` (another replica's announcement): one
        lease poll can take a request, every poll waiting for a result wants it."""
        self.notify(key, 1 if key.startswith(_GROUP) else None)

    def waiting(self, key: str) -> int:
        """How many waiters of `key` are still asleep (not woken yet)."""
        return sum(not waiter.done() for waiter in self._waiters.get(key, ()))
