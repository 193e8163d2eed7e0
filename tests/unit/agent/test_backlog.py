"""The directories' backlogs (agent/backlog.py): a directory is busy while `depth` of
the agent's writes are queued there; the hold it allows is `depth` writes' time at
that directory's pace, never more than the cap; whoever holds is woken when a write
ends; each worker thread says which directory it works for."""

from __future__ import annotations

import threading
import time

import pytest

from agent.backlog import DirectoryBacklog


def test_busy_from_depth_writes_and_never_with_depth_zero() -> None:
    backlog, off = DirectoryBacklog(3), DirectoryBacklog(0)
    started = [backlog.write_started("ad") for _ in range(3)]
    for _ in range(5):
        off.write_started("ad")
    assert backlog.busy("ad") and backlog.writing("ad") == 3
    assert not off.busy("ad")
    assert not backlog.busy(None) and not backlog.busy("ldap")
    backlog.write_ended(started.pop())
    assert not backlog.busy("ad") and backlog.writing("ad") == 2


def test_each_directory_has_its_own_backlog_and_leases_wait_only_when_all_are_busy() -> None:
    backlog = DirectoryBacklog(2, directories=["ad", "ldap"])
    ad = [backlog.write_started("ad") for _ in range(2)]
    assert backlog.busy("ad") and not backlog.busy("ldap")
    assert not backlog.busy_everywhere(), "the idle directory's requests would wait"
    ldap = [backlog.write_started("ldap") for _ in range(2)]
    assert backlog.busy_everywhere()
    backlog.write_ended(ldap.pop())
    assert not backlog.busy_everywhere() and backlog.busy("ad")
    backlog.write_ended(ad.pop())
    assert not DirectoryBacklog(2).busy_everywhere()  # no directory: never


def test_the_pace_is_the_time_between_writes_queued_behind_each_other() -> None:
    """Four writes sent together and finished 40 ms apart, as a directory that writes
    one at a time finishes them: the pace is about 40 ms a write, not the 160 ms the
    last one waited in all."""
    backlog = DirectoryBacklog(4, most_hold=10.0)
    for _ in range(6):  # the average settles
        started = [backlog.write_started("ad") for _ in range(4)]
        for s in started:
            time.sleep(0.04)
            backlog.write_ended(s)
    assert 0.03 <= backlog.hold("ad") / 4 <= 0.08


def test_a_write_alone_counts_its_own_time() -> None:
    backlog = DirectoryBacklog(2, most_hold=10.0)
    for _ in range(8):
        s = backlog.write_started("ad")
        time.sleep(0.01)
        backlog.write_ended(s)
        time.sleep(0.05)  # idle between writes: not part of any write's time
    assert backlog.hold("ad") / 2 < 0.03


@pytest.mark.parametrize("cap", [0.05, 0.0])
def test_the_hold_never_exceeds_its_cap(cap: float) -> None:
    backlog = DirectoryBacklog(8, most_hold=cap)
    s = backlog.write_started("ad")
    time.sleep(0.1)
    backlog.write_ended(s)
    assert backlog.hold("ad") == cap


def test_each_write_end_wakes_every_listener() -> None:
    """The poster's and the dispatcher's conditions: a thread waiting on each is woken
    by a write's end (long before its 10 s timeout)."""
    backlog = DirectoryBacklog(1)
    conditions = {"poster": threading.Condition(), "dispatcher": threading.Condition()}
    for cond in conditions.values():
        backlog.listen(cond)
    woken: list[str] = []
    ready = threading.Barrier(3)

    def wait(name: str) -> None:
        cond = conditions[name]
        with cond:
            ready.wait()
            if cond.wait(10):
                woken.append(name)

    threads = [threading.Thread(target=wait, args=(n,)) for n in conditions]
    for t in threads:
        t.start()
    ready.wait()
    for cond in conditions.values():  # both are waiting once their lock is free again
        with cond:
            pass
    started = time.monotonic()
    backlog.write_ended(backlog.write_started("ad"))
    for t in threads:
        t.join(15)
    assert sorted(woken) == ["dispatcher", "poster"]
    assert time.monotonic() - started < 5


def test_each_worker_thread_has_its_own_directory() -> None:
    backlog = DirectoryBacklog(1)
    seen: dict[str, str | None] = {}

    def work(name: str) -> None:
        backlog.routed(name)
        time.sleep(0.05)
        seen[name] = backlog.current()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("ad", "ldap")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"ad": "ad", "ldap": "ldap"}
    assert backlog.current() is None  # this thread never said
