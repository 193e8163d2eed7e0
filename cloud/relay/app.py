"""The relay's FastAPI application: wiring, error shapes, body cap, background pruning.

Routes live in routes_portal.py, routes_agent.py and routes_admin.py; the calls a
reset makes are answered in front of FastAPI by the same route functions
(hotpath.py, hotroutes.py), everything else through FastAPI. Errors are
JSON `{"error": <stable code>, "message": ...}`; validation errors never echo the
input back (it could be an enrollment code or a sealed envelope). Nothing here logs
a request or response body.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from cloud.relay import errors, openapi
from cloud.relay.authfirst import AuthenticateFirst
from cloud.relay.backends import open_store
from cloud.relay.bodylimit import BodyLimit
from cloud.relay.cache import HotCache
from cloud.relay.deps import AppStore, RelayContext
from cloud.relay.hotpath import HotPath
from cloud.relay.hotroutes import HOT_ROUTES
from cloud.relay.metrics import RelayMetrics
from cloud.relay.notify import SharedWakeups
from cloud.relay.ratelimit import TenantLimits
from cloud.relay.routes_admin import router as admin_router
from cloud.relay.routes_agent import router as agent_router
from cloud.relay.routes_ops import router as ops_router
from cloud.relay.routes_portal import router as portal_router
from cloud.relay.settings import RelayServerSettings
from cloud.relay.storethreads import StoreThreads

log = structlog.get_logger("writeback.relay")


async def _prune_forever(ctx: RelayContext) -> None:
    while True:
        await asyncio.sleep(ctx.settings.prune_interval)
        try:
            now = ctx.clock()
            deleted = await ctx.in_thread(ctx.store.prune, now, ctx.settings.retention)
            await ctx.in_thread(ctx.store.prune_nonces, now - ctx.settings.auth_skew - 1)
        except Exception as exc:  # noqa: BLE001 - a failed prune must not stop the next one
            log.error("store.prune_failed", error=type(exc).__name__)
            continue
        if deleted:
            log.info("store.pruned", requests=deleted)


async def _sweep(ctx: RelayContext) -> None:
    """Expire rate-limit windows (cheap, in memory, on the event loop)."""
    while True:
        await asyncio.sleep(1.0)
        ctx.limits.sweep()


async def _checkpoint_forever(ctx: RelayContext, checkpoint: Callable[[], None]) -> None:
    """SQLite: the WAL's checkpoint, on the store thread once a second (the event
    loop's connection, which does the writes, never runs one: store_sqlite.py)."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await ctx.in_thread(checkpoint)
        except Exception as exc:  # noqa: BLE001 - the next one catches up
            log.error("store.checkpoint_failed", error=type(exc).__name__)


async def _listen_to_other_replicas(ctx: RelayContext) -> Callable[[], None] | None:
    """With a shared database (PostgreSQL), wake this replica's long-polls when another
    replica stores what they wait for. The store calls back from its own thread."""
    if not isinstance(ctx.store, SharedWakeups):
        return None
    loop = asyncio.get_running_loop()

    def on_key(key: str) -> None:
        try:
            loop.call_soon_threadsafe(ctx.notifier.notify_stored, key)
        except RuntimeError:
            pass  # the loop closed under us (shutdown): nobody is waiting any more

    return await ctx.run(ctx.store.listen, on_key)


_STORE_THREADS = 8


def _store_threads(store: AppStore) -> StoreThreads | None:
    """Start the store's threads (as many as it asks for: SQLite one) and open each
    one's connection now, while file descriptors are to be had."""
    warm = getattr(store, "warm_thread", None)
    if warm is None:
        return None
    threads = StoreThreads(int(getattr(store, "store_threads", _STORE_THREADS)), warm)
    warm_inline = getattr(store, "warm_inline", None)
    if warm_inline is not None:
        warm_inline()  # this (the event loop's) thread runs store calls itself
    elif getattr(store, "inline_reads", False):
        warm()  # this (the event loop's) thread's connection, for the inline reads
    return threads


class RelayApp(FastAPI):
    """The FastAPI app, with the hot routes answered in front of it (hotpath.py)."""

    hot_path: HotPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_path
        if hot is not None and scope["type"] == "http":
            found = hot.find(scope)
            if found is not None:
                await hot.serve(found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def through_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    settings: RelayServerSettings, store: AppStore | None = None, *, hot_path: bool = True
) -> RelayApp:
    """Build the app. Without `store`, opens the database of `settings` (SQLite file or
    PostgreSQL URL) and closes it at shutdown; with one, the caller owns it (tests).
    `hot_path=False` serves every route through FastAPI (the equivalence test)."""
    owned = store is None
    limits = TenantLimits(
        submit_rate=settings.submit_rate,
        long_poll_rate=settings.long_poll_rate,
        enroll_rate_per_client=settings.enroll_rate_per_client,
        enroll_rate_total=settings.enroll_rate_total,
        max_long_polls_per_tenant=settings.max_long_polls_per_tenant,
    )
    the_store: AppStore = store or open_store(settings)
    metrics = RelayMetrics(the_store, time.time, settings.presence_timeout)
    cache = HotCache(ttl=settings.cache_ttl, presence_interval=settings.presence_timeout / 6)
    ctx = RelayContext(
        settings=settings, store=the_store, limits=limits, metrics=metrics, cache=cache
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # anyio loads its asyncio backend (a module import: a file descriptor) at its
        # first use, which is FastAPI's first dependency with `yield` (a lease poll's
        # slot): load it now, not under a descriptor flood (seen as a 500 in the flood
        # test, test_flood.py).
        with anyio.CancelScope():
            pass
        ctx.executor = _store_threads(the_store)
        stop_listening = await _listen_to_other_replicas(ctx)
        tasks = [asyncio.create_task(_prune_forever(ctx)), asyncio.create_task(_sweep(ctx))]
        checkpoint = getattr(the_store, "checkpoint", None)
        if checkpoint is not None:
            tasks.append(asyncio.create_task(_checkpoint_forever(ctx, checkpoint)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if stop_listening is not None:
                await ctx.run(stop_listening)
            if ctx.executor is not None:
                ctx.executor.shutdown()
            if owned:
                ctx.store.close()

    app = RelayApp(
        title="writeback relay",
        version="1",
        description="Queue between an SSPR portal and on-premises writeback agents. "
        "Carries signed, sealed envelopes it cannot read.",
        lifespan=lifespan,
    )
    app.state.relay = ctx
    # Outermost last: BodyLimit reads (bounded, with a deadline), then callers are
    # authenticated, then FastAPI parses the body.
    app.add_middleware(AuthenticateFirst, ctx=ctx)
    body_limit = 2 * settings.max_body_bytes + 4096
    app.add_middleware(BodyLimit, limit=body_limit, timeout=settings.body_timeout)
    app.include_router(portal_router)
    app.include_router(agent_router)
    app.include_router(admin_router)
    app.include_router(ops_router)

    errors.install(app)
    openapi.install(app)
    if hot_path:
        app.hot_path = HotPath(
            ctx, HOT_ROUTES, app.through_fastapi, body_limit, settings.body_timeout
        )

    return app
