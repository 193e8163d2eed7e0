"""agent/malloc.py: the arena limit is set on glibc Linux, and an operator's own
MALLOC_ARENA_MAX is left alone; trim() gives freed heap back to the system, and the
trim_memory job trims once per idle spell, never while the agent is busy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.malloc import TrimWhenIdle, limit_arenas

_PROBE = "from agent.malloc import limit_arenas; print(limit_arenas())"

# A worker thread allocates 60,000 blocks of 1 KB and frees all but every 64th (the
# kept ones stop glibc from simply shrinking the heap's top): the freed pages stay in
# the process until trim() gives them back.
_TRIM_PROBE = """
import threading
from agent.malloc import trim
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
kept = []
def work():
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(60000)]
    kept.extend(blocks[::64])
worker = threading.Thread(target=work)
worker.start()
worker.join()
before = rss_kib()
done = trim()
print(done, before - rss_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_set_on_linux_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "True"


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_gives_freed_heap_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _TRIM_PROBE], capture_output=True, text=True, check=True
    ).stdout
    done, freed_kib = out.split()
    assert done == "True"
    assert int(freed_kib) > 20_000  # most of the ~58 MB freed


def test_trims_once_per_idle_spell_never_while_busy() -> None:
    finished, in_flight, trims = [0], [0], list[int]()

    def trim() -> bool:
        trims.append(1)
        return True

    job = TrimWhenIdle(lambda: finished[0], lambda: in_flight[0], trim)
    job()
    assert trims == []  # nothing handled since start: nothing to give back
    finished[0] = 5  # a burst during the last interval
    job()
    assert trims == []
    in_flight[0] = 1  # a request still running
    job()
    assert trims == []
    in_flight[0] = 0  # a whole interval idle after the burst
    job()
    assert trims == [1]
    job()
    job()
    assert trims == [1]  # once per idle spell
    finished[0] = 6
    job()
    job()
    assert trims == [1, 1]
