"""Long-poll wake-ups (cloud/relay/notify.py): a submit wakes one lease poll of its
group, N submits wake N, a result wakes every poll waiting for it, and a woken poll
that will not look passes its wake-up on."""

from __future__ import annotations

import asyncio

from cloud.relay.notify import Notifier, group_key, request_key

GROUP = group_key("t1", "default")


async def _waiters(notifier: Notifier, key: str, count: int) -> list[asyncio.Task[bool]]:
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(notifier.wait(key, 5)))
        await asyncio.sleep(0)  # registered in this order: oldest first
    await asyncio.sleep(0.01)
    return tasks


def test_one_wake_up_answers_exactly_one_of_four_waiting_polls_the_oldest() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        polls = await _waiters(notifier, GROUP, 4)
        notifier.notify(GROUP, 1)
        await asyncio.sleep(0.05)
        assert [p.done() for p in polls] == [True, False, False, False]
        assert polls[0].result() is True
        assert notifier.waiting(GROUP) == 3
        notifier.notify(GROUP, 1)
        notifier.notify(GROUP, 1)  # two submits wake two
        await asyncio.sleep(0.05)
        assert [p.done() for p in polls] == [True, True, True, False]
        notifier.notify(GROUP)  # every one
        assert await polls[3] is True

    asyncio.run(scenario())


def test_two_wake_ups_before_the_first_waiter_runs_still_wake_two() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        polls = await _waiters(notifier, GROUP, 3)
        notifier.notify(GROUP, 1)
        notifier.notify(GROUP, 1)  # the first one woken has not run yet: skipped
        await asyncio.sleep(0.05)
        assert [p.done() for p in polls] == [True, True, False]
        polls[2].cancel()

    asyncio.run(scenario())


def test_a_result_wakes_every_poll_waiting_for_that_request_and_no_other() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        mine = request_key("t1", "r1")
        polls = await _waiters(notifier, mine, 3)
        other = asyncio.create_task(notifier.wait_any([request_key("t1", "r2")], 0.2))
        notifier.notify_stored(mine)  # as another replica announces a stored result
        assert await asyncio.gather(*polls) == [True, True, True]
        assert await other is False

    asyncio.run(scenario())


def test_another_replicas_submit_wakes_one_lease_poll() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        polls = await _waiters(notifier, GROUP, 2)
        notifier.notify_stored(GROUP)
        await asyncio.sleep(0.05)
        assert [p.done() for p in polls] == [True, False]
        polls[1].cancel()

    asyncio.run(scenario())


def test_a_woken_poll_cancelled_before_it_looked_passes_the_wake_up_on() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        polls = await _waiters(notifier, GROUP, 2)
        notifier.notify(GROUP, 1)
        polls[0].cancel()  # woken, then cancelled before it ran (client gone, shutdown)
        await asyncio.sleep(0.05)
        assert polls[0].cancelled()
        assert polls[1].done() and polls[1].result() is True

    asyncio.run(scenario())


def test_a_poll_cancelled_while_asleep_wakes_nobody() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        polls = await _waiters(notifier, GROUP, 2)
        polls[0].cancel()
        await asyncio.sleep(0.05)
        assert not polls[1].done()
        assert notifier.waiting(GROUP) == 1
        polls[1].cancel()

    asyncio.run(scenario())


def test_pass_on_wakes_the_next_waiter() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        polls = await _waiters(notifier, GROUP, 2)
        notifier.notify(GROUP, 1)
        assert await polls[0] is True
        notifier.pass_on(GROUP)  # the woken poll's client had gone away
        assert await polls[1] is True
        assert notifier.waiting(GROUP) == 0

    asyncio.run(scenario())
