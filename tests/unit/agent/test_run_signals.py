"""`writeback-agent run`'s main loop (agent/cli.py `_serve`): the signal handlers only
note a signal, and the loop acts on it in order from the main thread: SIGHUP reloads
the keys, SIGTERM/SIGINT stop the agent, and the loop ends once the agent stops (also
when something else stopped it)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import pytest

from agent.cli import _serve


class _Service:
    def __init__(self) -> None:
        self._stop = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)


class _Agent:
    def __init__(self, log: list[str]) -> None:
        self.service = _Service()
        self.log = log

    def reload_keys(self) -> bool:
        self.log.append("reload")
        return True


def _run(agent: Any, noted: list[int]) -> threading.Thread:
    thread = threading.Thread(target=_serve, args=(agent, noted), daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGHUP on Windows")
def test_noted_signals_are_acted_on_in_order() -> None:
    log: list[str] = []
    agent = _Agent(log)
    noted: list[int] = [signal.SIGHUP, signal.SIGHUP, signal.SIGTERM]
    thread = _run(agent, noted)
    thread.join(5)
    assert not thread.is_alive()
    assert log == ["reload", "reload"] and agent.service.stopping and noted == []


def test_a_stop_from_elsewhere_ends_the_loop() -> None:
    agent = _Agent([])
    thread = _run(agent, [])
    assert thread.is_alive()
    agent.service.stop()  # e.g. the Windows service's stop control
    thread.join(5)
    assert not thread.is_alive()


def test_sigint_stops_like_sigterm() -> None:
    agent = _Agent([])
    noted: list[int] = []
    thread = _run(agent, noted)
    noted.append(signal.SIGINT)
    thread.join(5)
    assert not thread.is_alive() and agent.service.stopping
