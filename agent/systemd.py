"""systemd readiness and watchdog (Type=notify, WatchdogSec=) without a dependency.

sd_notify(3) is one datagram to the AF_UNIX socket named in $NOTIFY_SOCKET ("@" =
Linux abstract namespace). `Notifier` sends READY=1 once the agent is started,
STATUS= whenever the readiness summary changes (what `systemctl status` shows), and
WATCHDOG=1 only while the agent's own loop is live (HealthState.live): a wedged
worker loop stops the pings and systemd restarts the service. Without NOTIFY_SOCKET
(not under systemd, Windows) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

from agent.health import HealthState
from agent.logging import get_logger

_log = get_logger(__name__)


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify message; False when not under systemd or the send failed."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address or not hasattr(socket, "AF_UNIX"):
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # vsock:// and other forms: not used by the units we ship
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        _log.warning("systemd.notify_failed", detail=exc.strerror or str(exc))
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of WatchdogSec (as sd_watchdog_enabled(3) recommends), or None if off."""
    env = env if env is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2_000_000)
    except ValueError:
        return None


def status_line(state: HealthState) -> str:
    """One line for `systemctl status`: ready, or what is down."""
    readiness = state.readiness()
    if readiness.ready:
        degraded = sorted(n for n, up in readiness.directories.items() if not up)
        return "ready" + (f"; down: {', '.join(degraded)}" if degraded else "")
    return "not ready: " + ", ".join(readiness.failing)


class Notifier:
    """READY=1 at start, then STATUS= on change and WATCHDOG=1 while the loop is live."""

    def __init__(
        self,
        state: HealthState,
        *,
        env: Mapping[str, str] | None = None,
        interval: float | None = None,
    ) -> None:
        self._state = state
        self._env = dict(env if env is not None else os.environ)
        self._watchdog = watchdog_interval(self._env)
        self._interval = interval or min(self._watchdog or 5.0, 5.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return bool(self._env.get("NOTIFY_SOCKET"))

    def start(self) -> None:
        if not self.enabled:
            return
        self._last_status = status_line(self._state)
        notify(f"READY=1\nSTATUS={self._last_status}\nMAINPID={os.getpid()}", self._env)
        self._thread = threading.Thread(target=self._loop, name="sd-notify", daemon=True)
        self._thread.start()

    def tick(self) -> None:
        """One round: watchdog ping if live, status if changed."""
        if self._watchdog is not None and self._state.live:
            notify("WATCHDOG=1", self._env)
        line = status_line(self._state)
        if line != self._last_status:
            self._last_status = line
            notify(f"STATUS={line}", self._env)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        notify("STOPPING=1\nSTATUS=stopping", self._env)
