"""The relay's store threads (cloud/relay/storethreads.py): results and errors reach
the caller, every thread is warmed before the first call, the calls run side by side,
and a caller that gives up leaves the threads serving."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cloud.relay.storethreads import StoreThreads


def test_results_and_errors_reach_the_caller_from_the_store_threads() -> None:
    threads = StoreThreads(2, name="t-store")

    def fails() -> None:
        raise LookupError("no such row")

    async def scenario() -> tuple[str, int, str]:
        where = await threads.call(lambda: threading.current_thread().name)
        total = await threads.call(sum, [1, 2, 3], start=4)
        with pytest.raises(LookupError, match="no such row"):
            await threads.call(fails)
        return where, total, threading.current_thread().name

    try:
        where, total, loop_thread = asyncio.run(scenario())
    finally:
        threads.shutdown()
    assert where.startswith("t-store_")
    assert where != loop_thread
    assert total == 10


def test_every_thread_is_warmed_once_before_the_first_call_and_calls_run_side_by_side() -> None:
    warmed: list[str] = []
    lock = threading.Lock()

    def warm() -> None:
        with lock:
            warmed.append(threading.current_thread().name)

    threads = StoreThreads(4, warm)
    assert sorted(warmed) == sorted(set(warmed)) and len(warmed) == 4
    # Four calls that each wait for the other three: they finish only if all four
    # run at once, on four threads.
    together = threading.Barrier(4, timeout=10)

    async def scenario() -> list[int]:
        return list(await asyncio.gather(*(threads.call(together.wait) for _ in range(4))))

    try:
        assert sorted(asyncio.run(scenario())) == [0, 1, 2, 3]
    finally:
        threads.shutdown()
    assert len(warmed) == 4  # nothing warmed again


def test_a_failing_warm_up_fails_the_start() -> None:
    def warm() -> None:
        raise OSError("unable to open database file")

    with pytest.raises(OSError, match="unable to open database file"):
        StoreThreads(3, warm)


def test_a_caller_that_gives_up_leaves_the_threads_serving() -> None:
    threads = StoreThreads(1)
    release = threading.Event()

    async def scenario() -> str:
        slow = asyncio.create_task(threads.call(release.wait, 10))
        await asyncio.sleep(0.05)
        slow.cancel()  # the client went away while the store call ran
        with pytest.raises(asyncio.CancelledError):
            await slow
        release.set()
        return await threads.call(lambda: "still serving")

    try:
        assert asyncio.run(scenario()) == "still serving"
    finally:
        threads.shutdown()
