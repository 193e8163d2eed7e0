"""Helpers for starting real server processes in tests, the way python-ldap's
slapdtest does: free port, temp dir, readiness poll with a deadline, stop at exit.

No pytest here: these modules are a small library (python-ldap's slapdtest is the
model) that tests, bench/ and scripts/demo.py all use. A missing binary raises
`ServerUnavailable` with a message that says which Debian package to install (as
pytest-postgresql does); the pytest plugin (tests/fixtures.py) turns that into a skip
locally and a failure under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """This machine cannot run the throwaway server; the message says what to install."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(
    name: str, package: str, *, extra_dirs: tuple[str, ...] = ("/usr/sbin", "/sbin")
) -> str:
    """The path of `name`, or ServerUnavailable naming the Debian package to install."""
    path = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None
    )
    if path:
        return path
    raise ServerUnavailable(
        f"{name} not found: install the Debian package {package!r} (apt-get install {package})"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `ready` until it is true; fail with the server's log on timeout or death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s:\n{_tail(log)}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
