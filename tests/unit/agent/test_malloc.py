"""agent/malloc.py: the arena limit is set on glibc Linux, and an operator's own
MALLOC_ARENA_MAX is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.malloc import limit_arenas

_PROBE = "from agent.malloc import limit_arenas; print(limit_arenas())"


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
