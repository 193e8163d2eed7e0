"""The relay's FastAPI application: wiring, error shapes, body cap, background pruning.

Routes live in routes_portal.py, routes_agent.py and routes_admin.py. Errors are
JSON `{"error": <stable code>, "message": ...}`; validation errors never echo the
input back (it could be an enrollment code or a sealed envelope). Nothing here logs
a request or response body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.relay.auth import RelayHTTPError
from cloud.relay.backends import open_store
from cloud.relay.deps import RelayContext
from cloud.relay.notify import SharedWakeups
from cloud.relay.routes_admin import router as admin_router
from cloud.relay.routes_agent import router as agent_router
from cloud.relay.routes_portal import router as portal_router
from cloud.relay.settings import RelaySettings
from cloud.relay.store import RelayStore

log = structlog.get_logger("writeback.relay")


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413 before they are buffered in full.
    With Content-Length the header decides (the server enforces the framing);
    chunked bodies are read here, counting, and replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await _send_413(send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await _send_413(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_413(send: Send) -> None:
    body = b'{"error":"too_large","message":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _prune_forever(ctx: RelayContext) -> None:
    while True:
        await asyncio.sleep(ctx.settings.prune_interval)
        try:
            deleted = await ctx.run(ctx.store.prune, ctx.clock(), ctx.settings.retention)
        except Exception as exc:  # noqa: BLE001 - a failed prune must not stop the next one
            log.error("store.prune_failed", error=type(exc).__name__)
            continue
        if deleted:
            log.info("store.pruned", requests=deleted)


async def _listen_to_other_replicas(ctx: RelayContext) -> Callable[[], None] | None:
    """With a shared database (PostgreSQL), wake this replica's long-polls when another
    replica stores what they wait for. The store calls back from its own thread."""
    if not isinstance(ctx.store, SharedWakeups):
        return None
    loop = asyncio.get_running_loop()

    def on_key(key: str) -> None:
        try:
            loop.call_soon_threadsafe(ctx.notifier.notify, key)
        except RuntimeError:
            pass  # the loop closed under us (shutdown): nobody is waiting any more

    return await ctx.run(ctx.store.listen, on_key)


def create_app(settings: RelaySettings, store: RelayStore | None = None) -> FastAPI:
    """Build the app. Without `store`, opens the database of `settings` (SQLite file or
    PostgreSQL URL) and closes it at shutdown; with one, the caller owns it (tests)."""
    owned = store is None
    ctx = RelayContext(settings=settings, store=store or open_store(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_listening = await _listen_to_other_replicas(ctx)
        pruner = asyncio.create_task(_prune_forever(ctx))
        try:
            yield
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            if stop_listening is not None:
                await ctx.run(stop_listening)
            if owned:
                ctx.store.close()

    app = FastAPI(
        title="writeback relay",
        version="1",
        description="Queue between an SSPR portal and on-premises writeback agents. "
        "Carries signed, sealed envelopes it cannot read.",
        lifespan=lifespan,
    )
    app.state.relay = ctx
    app.add_middleware(BodyLimit, limit=2 * settings.max_body_bytes + 4096)
    app.include_router(portal_router)
    app.include_router(agent_router)
    app.include_router(admin_router)

    @app.exception_handler(RelayHTTPError)
    async def relay_error(request: Request, exc: RelayHTTPError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.code, "message": exc.message, **exc.extra}
        headers = {"WWW-Authenticate": "WBA1"} if exc.status == 401 else None
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        return JSONResponse(
            {"error": "invalid_request", "message": f"bad or missing: {', '.join(fields)}"},
            status_code=422,
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
