"""sd_notify over a real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET is:
READY=1 at start, STATUS= from the agent's readiness, WATCHDOG=1 only while the
worker loop is live."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.health import HealthState
from agent.systemd import Notifier, notify, status_line, watchdog_interval


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.settimeout(0.2)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except TimeoutError:
        return messages


def test_ready_status_and_watchdog_follow_the_loop(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    clock = FakeClock()
    state = HealthState(wedge_after=60, clock=clock)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(state, env=env, interval=3600)  # ticks driven by the test

    state.mark_started()
    notifier.start()
    first = sock.recv(4096).decode().splitlines()
    assert first[0] == "READY=1"
    assert first[1] == "STATUS=not ready: relay, directories"
    assert first[2] == f"MAINPID={os.getpid()}"

    state.set_relay_ok(True)
    state.set_directory("corp", True)
    state.set_directory("lab", False)
    notifier.tick()
    assert _drain(sock) == ["WATCHDOG=1", "STATUS=ready; down: lab"]

    notifier.tick()  # nothing changed: only the ping
    assert _drain(sock) == ["WATCHDOG=1"]

    clock.now += 61  # the worker loop stopped beating: no ping, systemd will restart us
    notifier.tick()
    assert _drain(sock) == ["STATUS=not ready: live"]

    notifier.stop()
    assert _drain(sock) == ["STOPPING=1\nSTATUS=stopping"]


def test_abstract_socket_address(tmp_path: Path) -> None:
    name = f"wb-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"


def test_without_systemd_nothing_is_sent() -> None:
    assert notify("READY=1", {}) is False
    notifier = Notifier(HealthState(), env={})
    notifier.start()  # no thread, no error
    notifier.stop()
    assert not notifier.enabled


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": pid}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


def test_status_line_names_what_is_down() -> None:
    state = HealthState()
    assert status_line(state) == "not ready: started, relay, directories"
