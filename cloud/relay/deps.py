"""What every route needs: the relay context and the caller's identity (as FastAPI
dependencies), so routes state who may call them in their signature."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, cast

import structlog
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.types import Message, Receive, Scope

from cloud.relay.auth import (
    RelayHTTPError,
    ReplayedCall,
    bearer_token,
    check_admin,
    hash_secret,
    parse_agent_authorization,
    verify_agent_request,
)
from cloud.relay.cache import HotCache
from cloud.relay.metrics import RelayMetrics
from cloud.relay.notify import Notifier
from cloud.relay.ratelimit import TenantLimits
from cloud.relay.settings import RelayServerSettings
from cloud.relay.store import AgentRecord, RelayStore
from cloud.relay.storethreads import StoreThreads
from wire.canonical import b64url_decode, canonical_json
from wire.errors import Rejected
from wire.keys import AgentPublicKeys, key_id
from wire.results import open_heartbeat

log = structlog.get_logger("writeback.relay")
T = TypeVar("T")


# Everything the app calls on its store (the store seam's roles, operations included).
AppStore = RelayStore


# A heartbeat is small: version, a few directory flags, a counter.
MAX_HEARTBEAT_BYTES = 4096


@dataclass
class RelayContext:
    settings: RelayServerSettings
    store: AppStore
    limits: TenantLimits
    metrics: RelayMetrics
    cache: HotCache
    notifier: Notifier = field(default_factory=Notifier)
    clock: Callable[[], float] = time.time
    # Set when the server begins to stop: open long-polls answer "nothing yet" at
    # their next re-check so clients reconnect (to another replica) at once.
    stopping: bool = False

    # A fixed set of store threads, started (and their database connections opened)
    # before the relay serves: a store call never needs a new thread or file
    # descriptor, so a flood that uses up the process's open files cannot turn another
    # tenant's submit into a 500 (docs/relay-limits.md). None: the shared thread pool.
    executor: StoreThreads | None = None

    def __post_init__(self) -> None:
        # SQLite: store calls run on the event loop itself (`SQLiteStore.run_inline`),
        # those that would wait for the write lock on the store thread.
        self._inline: Callable[..., tuple[bool, Any]] | None = getattr(
            self.store, "run_inline", None
        )

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """A store call. Blocking stores (psycopg) run on the store threads; SQLite on
        the event loop when it can (`_run`).

        The first store call of a signed agent call first records that call's nonce
        (see `PendingNonce`; on a store thread in the same trip); a replay is refused
        there, before the call changes anything."""
        pending = _PENDING_NONCE.get()
        if pending is not None and pending.state != "spent":
            if pending.state == "replayed":
                raise ReplayedCall  # nothing more is done for a replayed call
            pending.state = "spent"
            try:
                if self._inline is None:
                    return await self._run(pending.then, self.store, fn, args, kwargs)
                # No trip to save: the nonce, then the call, each as any store call.
                if not await self._run(
                    self.store.use_nonce, pending.agent_id, pending.nonce, pending.ts
                ):
                    raise ReplayedCall
            except ReplayedCall:
                pending.state = "replayed"
                log.warning("agent.auth_failed", agent_id=pending.agent_id, error="replayed")
                raise
        return await self._run(fn, *args, **kwargs)

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """On the event loop when the store can run the call there without waiting
        (SQLite, whose calls cost less CPU than the hop to a thread and back: about
        20 us per call alone, more with the GIL contended); else on a store thread."""
        if self._inline is not None:
            done, value = self._inline(fn, args, kwargs)
            if done:
                return cast(T, value)
        return await self.in_thread(fn, *args, **kwargs)

    async def in_thread(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """A store call on a store thread, always: for the long ones (the prune, a
        checkpoint) that must not hold up the event loop."""
        if self.executor is not None:
            return await self.executor.call(fn, *args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    async def spend_pending_nonce(self) -> None:
        """Record the nonce of this signed call if no store call has done so yet."""
        pending = _PENDING_NONCE.get()
        if pending is not None and pending.state == "pending":
            with contextlib.suppress(ReplayedCall):  # answered already: only record it
                await self.run(_nothing)

    async def read(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """A store read: on the event loop when the store allows it (SQLite in WAL
        mode: readers take no lock, so a read is cheaper than the thread hop), else
        on a store thread like `run` (a network database)."""
        if self._inline is not None:
            return await self._run(fn, *args, **kwargs)
        if getattr(self.store, "inline_reads", False):
            return fn(*args, **kwargs)
        return await self.run(fn, *args, **kwargs)

    async def touch(self, agent_id: str, now: float) -> None:
        """Record presence, at most every presence_timeout / 6 per agent and process."""
        if self.cache.presence_due(agent_id):
            await self.run(self.store.touch_agent, agent_id, now)


@dataclass
class PendingNonce:
    """A verified agent call's nonce, not recorded yet.

    Why: recording a nonce is a store write, so it costs a trip to a store thread;
    every agent route makes a store call anyway, so the nonce rides with the first
    one (`RelayContext.run`) instead of taking a trip of its own: one thread hop per
    call less. What stays: the nonce is recorded, in the store shared by every relay
    process, before the call's first store operation, which is refused (401
    replayed) when the nonce was used before; a call that ends without any store
    call has it recorded at its end (`authfirst.AuthenticateFirst`)."""

    agent_id: str
    nonce: str
    ts: int
    state: Literal["pending", "spent", "replayed"] = "pending"

    def then(
        self, store: AppStore, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """On a store thread: record the nonce, then run `fn` (refused if replayed)."""
        if not store.use_nonce(self.agent_id, self.nonce, self.ts):
            raise ReplayedCall
        return fn(*args, **kwargs)


def _nothing() -> None:
    return None


# The pending nonce of the agent call being served (set by `authenticate_agent_deferred`).
_PENDING_NONCE: ContextVar[PendingNonce | None] = ContextVar("relay_pending_nonce", default=None)


@contextlib.contextmanager
def one_call() -> Iterator[None]:
    """Keep a call's pending nonce to that call, also when calls share a context (an
    in-process client runs them in one task; a server gives each its own)."""
    token = _PENDING_NONCE.set(None)
    try:
        yield
    finally:
        _PENDING_NONCE.reset(token)

def client_gone(request: Request) -> bool:
    """Has the client closed the connection? `Request.is_disconnected`, but past the
    body the middlewares replay (app.BodyLimit and authfirst.AuthenticateFirst each
    hand it on once before deferring to the server): a route that never read its
    body (a lease poll) would otherwise get that body, not the disconnect, at its
    first two checks, and a poll whose agent was gone would take a request nobody
    receives (stranded until its lease times out)."""
    for _ in range(4):
        message = _received_now(request.receive)
        if message is None:  # nothing there: the connection is open
            return False
        if message.get("type") != "http.request":
            return message.get("type") == "http.disconnect"
    return False


def _received_now(receive: Receive) -> Message | None:
    """The message `receive()` has ready, or None when it would have to wait for the
    client: its coroutine is run one step, and closed if it suspends (its own clean-up
    runs: uvicorn's drops its waiter on the event). Only what is there already, as
    Starlette's CancelScope-and-cancel does, without a cancel scope and a cancellation
    per check (about 0.3 ms of the relay's CPU per wake-up of a long-poll)."""
    step = receive()
    if not inspect.iscoroutine(step):  # an awaitable of another kind: not run here
        return None
    try:
        step.send(None)
    except StopIteration as done:
        message: Message = done.value
        return message
    step.close()
    return None


async def get_ctx(request: Request) -> RelayContext:
    # async on purpose: FastAPI runs a plain `def` dependency in the thread pool, a
    # thread hop on every call for one attribute read.
    ctx: RelayContext = request.app.state.relay
    return ctx


Ctx = Annotated[RelayContext, Depends(get_ctx)]


# Where the identity established by `authfirst.AuthenticateFirst` is kept in the
# request's state, so the dependencies below do not check (or burn a nonce) twice.
IDENTITY = "relay_identity"


def _established(request: Request) -> object:
    return getattr(request.state, IDENTITY, None)


async def portal_tenant(request: Request, ctx: Ctx) -> str:
    known = _established(request)
    if isinstance(known, str):
        return known
    return await authenticate_portal(request, ctx)


async def signed_agent(request: Request, ctx: Ctx) -> AgentRecord:
    known = _established(request)
    if isinstance(known, AgentRecord):
        return known
    return await authenticate_agent(request, ctx)


async def admin(request: Request, ctx: Ctx) -> None:
    await authenticate_admin(request, ctx)


async def authenticate_portal(request: Request, ctx: RelayContext) -> str:
    return await portal_by_token(request.headers.get("authorization"), ctx)


async def portal_by_token(authorization: str | None, ctx: RelayContext) -> str:
    """The tenant whose API token `authorization` (a Bearer header) carries."""
    token = bearer_token(authorization)
    if token is None:
        raise RelayHTTPError(401, "missing_token", "Authorization: Bearer <tenant API token>")
    token_hash = hash_secret(token)
    tenant = await ctx.cache.tenant(
        token_hash, lambda: ctx.read(ctx.store.tenant_for_token, token_hash)
    )
    if tenant is None:
        raise RelayHTTPError(401, "invalid_token")
    return tenant


def header(scope: Scope, name: bytes) -> str | None:
    """A request header as `Request.headers.get` reads it (the first, latin-1)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def path_with_query(scope: Scope) -> bytes:
    """The path and query as the agent signed them: the raw path as sent."""
    raw_path = scope.get("raw_path") or URL(scope=scope).path.encode("utf-8")
    query = scope.get("query_string", b"")
    return bytes(raw_path) + (b"?" + bytes(query) if query else b"")


async def authenticate_agent(request: Request, ctx: RelayContext) -> AgentRecord:
    """Verify the WBA1 signature over method, path, timestamp, nonce and body, and
    record the nonce now."""
    return await _authenticate_agent(request, ctx, defer_nonce=False)


async def authenticate_agent_deferred(request: Request, ctx: RelayContext) -> AgentRecord:
    """As `authenticate_agent`, but the nonce is recorded with the call's first store
    call (`PendingNonce`); the caller spends it at the end if nothing did."""
    return await _authenticate_agent(request, ctx, defer_nonce=True)


async def _authenticate_agent(
    request: Request, ctx: RelayContext, *, defer_nonce: bool
) -> AgentRecord:
    return await agent_by_signature(
        request.scope, await request.body(), ctx, defer_nonce=defer_nonce
    )


async def agent_by_signature(
    scope: Scope, body: bytes, ctx: RelayContext, *, defer_nonce: bool
) -> AgentRecord:
    """The enrolled agent whose signed call this is (scope: method, path, query and
    the Authorization header; `body`: the body as read)."""
    authorization = header(scope, b"authorization")
    creds = parse_agent_authorization(authorization)
    agent = await ctx.cache.agent(
        creds.agent_id, lambda: ctx.read(ctx.store.get_agent, creds.agent_id)
    )
    try:
        verified = verify_agent_request(
            creds,
            agent,
            method=scope["method"],
            path_with_query=path_with_query(scope),
            body=body,
            now=ctx.clock(),
            max_skew=ctx.settings.auth_skew,
        )
        # Usable once: the nonce is recorded in the store, so a replay is refused by
        # every relay process sharing the database, for as long as the clock window
        # would accept its timestamp (older nonces are pruned: the window refuses them).
        if defer_nonce:
            _PENDING_NONCE.set(PendingNonce(verified.agent_id, creds.nonce, int(creds.ts)))
        elif not await ctx.run(
            ctx.store.use_nonce, verified.agent_id, creds.nonce, int(creds.ts)
        ):
            raise RelayHTTPError(401, "replayed", "this signed call was used before")
    except RelayHTTPError as exc:
        log.warning("agent.auth_failed", agent_id=creds.agent_id, error=exc.code)
        raise
    return verified


async def verified_heartbeat(request: Request, agent: SignedAgent) -> bytes:
    """The heartbeat body, checked with the wire contract's `open_heartbeat` (size,
    strict JSON, shape, signature by the enrolled key, agent id), as the canonical
    bytes to store: what operators are shown was signed by the agent itself."""
    raw = await request.body()
    # Only the signing half is needed here; model_construct skips the KEM fields.
    trusted = AgentPublicKeys.model_construct(  # type: ignore[call-arg]
        agent_id=agent.agent_id,
        sign_kid=key_id("ed25519", b64url_decode(agent.sign_key)),
        sign_key=agent.sign_key,
    )
    try:
        body, _ = open_heartbeat(raw, [trusted], max_bytes=MAX_HEARTBEAT_BYTES)
    except Rejected as exc:
        status = 413 if exc.reason == "too_large" else 422
        raise RelayHTTPError(status, "invalid_heartbeat", exc.detail) from None
    return canonical_json(body.model_dump(mode="json"))


async def enroll_gate(request: Request, ctx: Ctx) -> None:
    """Enrollment codes cannot be guessed at any useful rate: per client and in total."""
    client = request.client.host if request.client else "unknown"
    await ctx.limits.enroll_attempt(client)


async def long_poll_slot(agent: SignedAgent, ctx: Ctx) -> AsyncIterator[None]:
    """An agent's lease poll holds one of its tenant's long-poll slots while open."""
    async with ctx.limits.long_poll(agent.tenant, "agents"):
        yield


async def authenticate_admin(request: Request, ctx: RelayContext) -> None:
    token = ctx.settings.admin_token
    check_admin(
        request.headers.get("authorization"), None if token is None else token.get_secret_value()
    )


PortalTenant = Annotated[str, Depends(portal_tenant)]
SignedAgent = Annotated[AgentRecord, Depends(signed_agent)]
Admin = Depends(admin)
VerifiedHeartbeat = Annotated[bytes, Depends(verified_heartbeat)]
EnrollGate = Depends(enroll_gate)
LongPollSlot = Depends(long_poll_slot)
