"""One send per answer: a transport that holds what is written between `cork()` and
`uncork()` and writes it at once.

Why: uvicorn writes an answer's status line and headers when the app sends
`http.response.start` and its body at `http.response.body`: two send() calls, two TCP
segments on a TCP_NODELAY socket, and two reads (two wake-ups) at the client. The
relay's hot path (hotpath.py) sends both messages back to back, so it corks the
connection's transport around them (the key `CORK` in the scope, set by
server.header_timeout_protocol): one send() per answer, the same bytes on the wire.
Everything but `write` is the wrapped transport's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

# Scope key: the connection's CorkedTransport (absent: write as uvicorn does).
CORK = "relay.cork"


class CorkedTransport:
    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            self._held.append(bytes(data))
        else:
            self._transport.write(data)

    def cork(self) -> None:
        """Hold the writes from now until `uncork`."""
        if self._held is None:
            self._held = []

    def uncork(self) -> None:
        """Write what was held, in one write (also after an error between the two)."""
        held, self._held = self._held, None
        if held:
            self._transport.write(b"".join(held))

    def close(self) -> None:
        self.uncork()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
