"""Running the relay under uvicorn, with the limits that keep slow clients from using
up its file descriptors (docs/relay-limits.md has the budget).

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) but gives a client
unlimited time to send its request headers, so a client trickling one header byte at
a time holds a socket forever. `header_timeout_protocol` adds that deadline: from the
moment a connection opens (or finishes a response) to the end of the next request's
headers. The body has its own deadline in the app (`bodylimit.BodyLimit`).

HTTP parsing: uvicorn's httptools protocol (the C parser of Node.js, llhttp) when
httptools is installed (the `cloud` extra installs it), else its pure-Python h11 one.
h11 cost about a sixth of the relay's CPU per call in bench/bench_relay_cpu.py.
"""

from __future__ import annotations

import asyncio
import math
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cloud.relay.cork import CORK, CorkedTransport
from cloud.relay.deps import RelayContext
from cloud.relay.settings import RelayServerSettings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

HttpProtocol = type[H11Protocol] | type["HttpToolsProtocol"]


def default_http_protocol() -> HttpProtocol:
    return H11Protocol if HttpToolsProtocol is None else HttpToolsProtocol


def header_timeout_protocol(seconds: float, base: HttpProtocol | None = None) -> HttpProtocol:
    """`base` (default: httptools when installed, else h11) with the header deadline.
    Both keep the request being answered in `self.cycle`, made once a request's
    headers are complete, and call `on_response_complete` after each response."""
    parent: Any = base or default_http_protocol()
    # httptools makes a request's scope in on_message_begin, where the cork is put in it
    # (cork.py); h11 makes it elsewhere, and its answers go out as before.
    corks = hasattr(parent, "on_message_begin")

    class HeaderTimeoutProtocol(parent):  # type: ignore[misc]
        # One timer per connection, re-armed only when it fires early: a keep-alive
        # connection's requests each move the deadline (a float) instead of cancelling
        # a timer and scheduling a new one (two heap operations per request).
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_cycle: Any = None
        _deadline = 0.0

        def _start_header_timer(self) -> None:
            self._waiting_cycle = self.cycle
            self._deadline = self.loop.time() + seconds
            if self._header_timer is None:
                self._header_timer = self.loop.call_at(self._deadline, self._header_timeout)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not self._waiting_cycle or not self._idle():
                return  # a request's headers came in time; its response re-arms
            if self.loop.time() < self._deadline:  # waiting since a later response
                self._header_timer = self.loop.call_at(self._deadline, self._header_timeout)
                return
            self.transport.close()  # no request line + headers in time

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if corks:
                corked = CorkedTransport(cast(asyncio.Transport, transport))
                transport = cast(asyncio.Transport, corked)
            super().connection_made(transport)
            self._start_header_timer()

        def on_message_begin(self) -> None:  # httptools: a request's scope is made here
            super().on_message_begin()
            self.scope[CORK] = self.transport

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._idle():
                self._start_header_timer()  # the next request on this connection

    return HeaderTimeoutProtocol


def uvicorn_config(
    app: Any, settings: RelayServerSettings, log_level: str, *, access_log: bool = False
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=header_timeout_protocol(settings.header_timeout),
        log_level=log_level,
        log_config=None,  # our logging setup (cloud/relay/logs.py) handles uvicorn's loggers
        access_log=access_log,
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_timeout)),
        limit_concurrency=settings.limit_concurrency,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown),
        server_header=False,
    )


def serve(
    app: Any, settings: RelayServerSettings, log_level: str, *, access_log: bool = False
) -> None:
    ctx: RelayContext = app.state.relay

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            ctx.stopping = True  # a plain flag: safe to set from a signal handler
            super().handle_exit(sig, frame)

    Server(uvicorn_config(app, settings, log_level, access_log=access_log)).run()
