"""Liveness, readiness and metrics over HTTP on localhost, for systemd, k8s and Prometheus.

Why the standard library server: three GET endpoints do not justify an ASGI stack in
the agent, and a daemon thread keeps working while the main loop is blocked in a
long-poll, which is exactly when a probe must still answer.

What the answers mean (`HealthState`):

- live   = the main loop has called `beat()` within `wedge_after` seconds (counted
           from construction until the first beat). A failed restart is cheaper than
           a wedged agent holding leases, so only a stuck loop makes /healthz fail;
           relay or directory outages do not (restarting would not fix them).
- ready  = live, `mark_started()` called, `mark_stopping()` not called, the relay
           answered lately, and at least one registered directory is up. One
           directory of several being down leaves the agent ready: requests for the
           others still succeed and the down one answers `directory_unavailable`
           (listed under "degraded" in the /readyz body). No directory registered
           means not ready: the agent could not serve anything.

The server only binds to loopback unless `allow_remote=True`: /readyz names the
directories and /metrics counts requests per status, which is nobody else's business.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from agent.logging import get_logger
from agent.metrics import Metrics

__all__ = ["HealthServer", "HealthState", "Readiness"]


@dataclass(frozen=True)
class Readiness:
    """One consistent reading of the state; `failing` names the checks that fail."""

    ready: bool
    live: bool
    failing: tuple[str, ...]
    started: bool
    stopping: bool
    relay_ok: bool
    directories: dict[str, bool] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not_ready",
            "failing": list(self.failing),
            "degraded": sorted(name for name, up in self.directories.items() if not up),
            "started": self.started,
            "stopping": self.stopping,
            "relay": self.relay_ok,
            "directories": dict(self.directories),
        }


class HealthState:
    """Thread-safe health flags, written by the service and read by the HTTP thread."""

    def __init__(
        self, *, wedge_after: float = 120.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if wedge_after <= 0:
            raise ValueError("wedge_after must be positive")
        self._lock = threading.Lock()
        self._clock = clock
        self._wedge_after = wedge_after
        self._last_beat = clock()
        self._started = False
        self._stopping = False
        self._relay_ok = False
        self._directories: dict[str, bool] = {}

    # -- writers -------------------------------------------------------------------

    def beat(self) -> None:
        """Called by the main loop on every iteration; proves it is not wedged."""
        with self._lock:
            self._last_beat = self._clock()

    def mark_started(self) -> None:
        with self._lock:
            self._started = True

    def mark_stopping(self) -> None:
        """Readiness drops at once so nothing new is routed here during shutdown."""
        with self._lock:
            self._stopping = True

    def set_relay_ok(self, ok: bool) -> None:
        with self._lock:
            self._relay_ok = ok

    def set_directory(self, name: str, ok: bool) -> None:
        """Register a directory (by its configured name) or update its state."""
        with self._lock:
            self._directories[name] = ok

    # -- readers -------------------------------------------------------------------

    @property
    def started(self) -> bool:
        with self._lock:
            return self._started

    @property
    def stopping(self) -> bool:
        with self._lock:
            return self._stopping

    @property
    def relay_ok(self) -> bool:
        with self._lock:
            return self._relay_ok

    @property
    def directories(self) -> dict[str, bool]:
        """A copy; change it with `set_directory`."""
        with self._lock:
            return dict(self._directories)

    @property
    def seconds_since_beat(self) -> float:
        with self._lock:
            return self._clock() - self._last_beat

    @property
    def live(self) -> bool:
        return self.seconds_since_beat <= self._wedge_after

    @property
    def ready(self) -> bool:
        return self.readiness().ready

    def readiness(self) -> Readiness:
        with self._lock:
            live = self._clock() - self._last_beat <= self._wedge_after
            started, stopping, relay_ok = self._started, self._stopping, self._relay_ok
            directories = dict(self._directories)
        failing = []
        if not live:
            failing.append("live")
        if not started:
            failing.append("started")
        if stopping:
            failing.append("stopping")
        if not relay_ok:
            failing.append("relay")
        if not any(directories.values()):
            failing.append("directories")
        return Readiness(
            ready=not failing,
            live=live,
            failing=tuple(failing),
            started=started,
            stopping=stopping,
            relay_ok=relay_ok,
            directories=directories,
        )


_log = get_logger(__name__)


class _Server(ThreadingHTTPServer):
    """Carries what the handler needs; logs handler crashes instead of printing them."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], family: int, state: HealthState, metrics: Metrics
    ) -> None:
        self.address_family = family
        self.state = state
        self.metrics = metrics
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints a traceback to stderr, outside our redaction.
        _log.warning("health.error", client=str(client_address[0]), exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "writeback-agent"
    sys_version = ""  # do not advertise the Python version
    timeout = 10  # a stuck client must not hold a thread forever

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            live = server.state.live
            self._send_json(200 if live else 503, {"status": "ok" if live else "wedged"})
        elif path == "/readyz":
            readiness = server.state.readiness()
            self._send_json(200 if readiness.ready else 503, readiness.as_json())
        elif path == "/metrics":
            body, content_type = server.metrics.render()
            self._send(200, body, content_type)
        else:
            self._send_json(404, {"status": "not_found"})

    def _send_json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Not "code": that key is redacted (enrollment codes). HTTPStatus -> plain int.
        status = int(code) if isinstance(code, int) else code
        _log.debug(
            "health.http",
            client=self.client_address[0],
            request=self.requestline,
            http_status=status,
        )

    def log_message(self, format: str, *args: Any) -> None:  # `format`: the stdlib name
        _log.debug("health.http", client=self.client_address[0], message=format % args)


def _family_for(host: str, allow_remote: bool) -> int:
    """The socket family to bind `host` with; refuses non-loopback unless allowed."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not allow_remote and not all(a.is_loopback for a in addresses):
        raise ValueError(
            f"refusing to serve health and metrics on {host!r}: not a loopback address "
            "(pass allow_remote=True to expose them)"
        )
    return socket.AF_INET6 if addresses[0].version == 6 else socket.AF_INET


class HealthServer:
    """/healthz, /readyz and /metrics in a daemon thread; `start()` returns the port."""

    def __init__(
        self,
        state: HealthState,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_remote: bool = False,
    ) -> None:
        self._family = _family_for(host, allow_remote)
        self._host, self._port = host, port
        self._state, self._metrics = state, metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The configured host and port (port 0: any free port)."""
        return self._host, self._port

    @property
    def port(self) -> int | None:
        """The bound port while running, else None."""
        return self._server.server_address[1] if self._server else None

    def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("health server already started")
        self._server = _Server((self._host, self._port), self._family, self._state, self._metrics)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="health-http",
            daemon=True,
        )
        self._thread.start()
        port: int = self._server.server_address[1]
        _log.info("health.listening", host=self._host, port=port)
        return port

    def stop(self) -> None:
        """Stop serving and close the socket. Safe to call twice or before start()."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
