"""The relay's store threads: a fixed set of threads that run the blocking store calls
(SQLite, psycopg) for the event loop.

Why not `loop.run_in_executor(ThreadPoolExecutor)`: a call through it builds a
concurrent Future (with its Condition and locks), a work item, an asyncio future
chained to the first by callbacks, and takes the executor's shutdown locks: about
60 us of CPU per call, measured, against about 30 us here, where a call is one tuple
on a queue and one `call_soon_threadsafe` back. The relay makes two or three store
calls per HTTP call (the nonce, the operation), so this is a few percent of its CPU.

The threads start, and each runs `warm` (SQLite: opens its connection) before the
relay serves, so a store call never needs a new thread or file descriptor later
(docs/relay-limits.md).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller was cancelled (client gone, shutdown)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class StoreThreads:
    """`count` threads taking jobs from one queue; `call` awaits one job's result."""

    def __init__(self, count: int, warm: Callable[[], None] | None = None,
                 name: str = "relay-store") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        started = threading.Barrier(count + 1)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                if warm is not None:
                    warm()
            except BaseException as exc:  # noqa: BLE001 - reported by the constructor
                failures.append(exc)
            started.wait()
            if not failures:
                self._serve()

        for n in range(count):
            thread = threading.Thread(target=run, name=f"{name}_{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        started.wait()
        if failures:
            self.shutdown()
            raise failures[0]

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn = job
            try:
                outcome = (True, fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:
                pass  # the loop closed: nobody is waiting any more
            del job, future, outcome  # keep no result alive while idle

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, (lambda: fn(*args, **kwargs)) if args or kwargs else fn))
        return await future

    def shutdown(self) -> None:
        """Let every thread finish its job in hand and stop (does not wait for them)."""
        for _ in self._threads:
            self._jobs.put(None)
