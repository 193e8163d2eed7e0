"""Authenticate before the body is parsed.

FastAPI reads and decodes a route's JSON body before it solves the route's
dependencies, so an unauthenticated caller sending a malformed body used to get 400
or 422 (and learn about our schema) instead of 401. This middleware runs the same
checks as the dependencies in deps.py first, by path prefix, and leaves the identity
in the request state for them; nothing is checked twice (an agent's nonce is burned
once: with the call's first store call, or at its end if it made none; deps.PendingNonce).

    /v1/agent/...             signed agent call (WBA1)
    /v1/groups/..., /v1/requests...   portal tenant token
    /v1/admin/...             admin token
    anything else             no authentication (enroll, /healthz, /readyz, /metrics)

Errors are answered here in the same shape as the app's exception handlers (errors.py):
a middleware sits outside them. The hot path (hotpath.py) runs the same `establish`
itself and marks the scope `PREPARED`; this middleware and `bodylimit.BodyLimit` then pass
the call through (it is not checked, nor its body read, twice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.relay.auth import RelayHTTPError
from cloud.relay.deps import (
    IDENTITY,
    RelayContext,
    agent_by_signature,
    authenticate_admin,
    authenticate_agent_deferred,
    authenticate_portal,
    header,
    one_call,
    portal_by_token,
)
from cloud.relay.errors import error_response, translate_store_error
from cloud.relay.store import StoreError

Check = Callable[[Request, RelayContext], Awaitable[object]]

# (path prefix, check, OpenAPI security scheme name: see openapi.py)
_BY_PREFIX: tuple[tuple[str, Check, str], ...] = (
    ("/v1/agent/", authenticate_agent_deferred, "agentSignature"),
    ("/v1/groups/", authenticate_portal, "portalToken"),
    ("/v1/requests", authenticate_portal, "portalToken"),
    ("/v1/admin/", authenticate_admin, "adminToken"),
)


def _check_for(path: str) -> Check | None:
    for prefix, check, _ in _BY_PREFIX:
        if path.startswith(prefix):
            return check
    return None


def scheme_for(path: str) -> str | None:
    """The security scheme that protects `path` (None: no authentication)."""
    for prefix, _, scheme in _BY_PREFIX:
        if path.startswith(prefix):
            return scheme
    return None


# Scope key set by the hot path when it has read the body and authenticated the caller
# before handing a call to FastAPI: BodyLimit and AuthenticateFirst pass it through.
PREPARED = "relay.prepared"


async def establish(request: Request, ctx: RelayContext) -> object | None:
    """The caller's identity by the path's check (None: the path needs none). Raises
    RelayHTTPError, a store error translated as an unnamed route's."""
    check = _check_for(request.scope["path"])
    if check is None:
        return None
    try:
        return await check(request, ctx)
    except StoreError as exc:
        raise translate_store_error(exc, "") from exc


async def establish_read(
    scope: Scope, body: bytes, receive: Receive, ctx: RelayContext
) -> object | None:
    """`establish` for a call whose body is read already (the hot path): an agent's
    or a portal's call checked from the scope itself, by the same functions
    (deps.agent_by_signature, deps.portal_by_token), without building a Request and
    replaying the body into it."""
    check = _check_for(scope["path"])
    try:
        if check is authenticate_agent_deferred:
            return await agent_by_signature(scope, body, ctx, defer_nonce=True)
        if check is authenticate_portal:
            return await portal_by_token(header(scope, b"authorization"), ctx)
    except StoreError as exc:
        raise translate_store_error(exc, "") from exc
    return await establish(Request(scope, replaying(body, receive)), ctx)


class AuthenticateFirst:
    def __init__(self, app: ASGIApp, ctx: RelayContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = _check_for(scope["path"]) if scope["type"] == "http" else None
        if check is None or PREPARED in scope:
            await self.app(scope, receive, send)
            return
        with one_call():
            await self._authenticated(scope, receive, send)

    async def _authenticated(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            identity = await establish(request, self.ctx)
        except RelayHTTPError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[IDENTITY] = identity
        body = await request.body()  # already read (and bounded) by BodyLimit
        try:
            await self.app(scope, replaying(body, receive), send)
        finally:
            # An agent call that made no store call (refused before it got that far)
            # still uses up its nonce.
            await self.ctx.spend_pending_nonce()


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body a middleware has already read, in one
    message, and then defers to the real one (for the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
