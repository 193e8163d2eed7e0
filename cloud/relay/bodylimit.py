"""The request body, read whole before any route sees it: bounded in size and time.

Bodies are small (envelopes), so buffering costs nothing worth saving, and a body read
up front lets the caller be authenticated over it before anything parses it
(authfirst.py). One implementation, used by the `BodyLimit` middleware (FastAPI's
routes) and by the hot path (hotpath.py).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.relay.authfirst import PREPARED, replaying


class BodyLimit:
    """Read the whole body before the app sees it (`read_body`); a call the hot path
    prepared (authfirst.PREPARED) has been read already and passes through."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or PREPARED in scope:
            await self.app(scope, receive, send)
            return
        body = await read_body(scope, receive, send, self.limit, self.timeout)
        if body is not None:
            await self.app(scope, replaying(body, receive), send)


async def read_body(
    scope: Scope, receive: Receive, send: Send, limit: int, timeout: float
) -> bytes | None:
    """The whole body, or None when it was refused (answered here) or the client went
    away: more than `limit` bytes is 413 (by Content-Length at once, else while
    counting), a body not delivered within `timeout` seconds 408, so a trickling
    client cannot hold a request open."""
    length = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value  # the last one, as dict(headers) would take it
    if length is not None and (not length.isdigit() or int(length) > limit):
        await _send_error(send, 413, b"too_large", b"request body too large")
        return None
    chunks: list[bytes] = []
    seen = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None  # client went away
                chunks.append(message.get("body", b""))
                seen += len(chunks[-1])
                if seen > limit:
                    await _send_error(send, 413, b"too_large", b"request body too large")
                    return None
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        await _send_error(send, 408, b"body_timeout", b"request body not sent in time")
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_error(send: Send, status: int, code: bytes, message: bytes) -> None:
    body = b'{"error":"' + code + b'","message":"' + message + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
