"""The relay's hot routes, answered without FastAPI's per-call machinery.

Why: a password reset costs the relay three to four HTTP calls (submit, the agent's
lease, permit and result, the portal's result wait). Through FastAPI each call passed
eight middleware layers, route matching, dependency solving and response building:
about 1.6 ms of event-loop CPU per call against 0.4 ms for a bare /healthz.

What a hot call gets here, in one pass and by the same code as through FastAPI:

    body        bodylimit.read_body: the same size limit (413) and deadline (408) as BodyLimit
    caller      authfirst.establish_read: the same checks, in the same order, as
                AuthenticateFirst (the nonce is spent once: deps.PendingNonce)
    query/body  parsed at once when well formed (a strict form of each query
                parameter; a JSON body by the route's pydantic model, in Rust)
    the route   its own function in routes_agent.py / routes_portal.py (hotroutes.py
                binds them): one implementation of each route
    errors      errors.answer, as the app's exception handlers answer them

A call whose query or body is not plainly well formed (or has a content type other
than application/json) is handed to FastAPI with the body read and the caller
established (authfirst.PREPARED), so every validation error is FastAPI's own, in
exactly its shape. Every other path, and every other method, goes to FastAPI as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.relay.auth import RelayHTTPError
from cloud.relay.authfirst import PREPARED, establish_read, replaying
from cloud.relay.bodylimit import read_body
from cloud.relay.cork import CORK, CorkedTransport
from cloud.relay.deps import IDENTITY, RelayContext, one_call
from cloud.relay.errors import answer, error_response

Headers = list[tuple[bytes, bytes]]
QueryParser = Callable[[str], object]  # raises ValueError: not plainly well formed


class NotPlain(ValueError):
    """The call is not plainly well formed: FastAPI answers it."""


@dataclass(frozen=True)
class HotCall:
    """What a hot route's function is called with."""

    ctx: RelayContext
    request: Request  # for the long-polls' disconnect check (the body is read already)
    identity: Any  # AgentRecord (agent routes) or the tenant (portal routes)
    param: str  # the path parameter ("" when the route has none)
    query: Mapping[str, Any]
    body: Any  # the parsed model, or the raw bytes when the route has no model
    raw: bytes


@dataclass(frozen=True)
class HotRoute:
    name: str  # the endpoint function's name: errors.answer maps store errors by it
    serve: Callable[[HotCall], Awaitable[BaseModel | Response]]
    status: int = 200
    model: type[BaseModel] | None = None  # the JSON body's model (None: raw bytes)
    query: Mapping[str, tuple[QueryParser, object]] = field(default_factory=dict)


@dataclass(frozen=True)
class HotRoutes:
    """Exact (method, path) routes, and routes with one path parameter between a
    prefix and a suffix (a segment without '/', as FastAPI's `{name}` matches)."""

    exact: Mapping[tuple[str, str], HotRoute]
    templated: tuple[tuple[str, str, str, HotRoute], ...]  # method, prefix, suffix, route

    def find(self, scope: Scope) -> tuple[HotRoute, str] | None:
        if scope.get("root_path"):
            return None
        method: str = scope["method"]
        path: str = scope["path"]
        route = self.exact.get((method, path))
        if route is not None:
            return route, ""
        for route_method, prefix, suffix, route in self.templated:
            if method == route_method and path.startswith(prefix) and path.endswith(suffix):
                param = path[len(prefix) : len(path) - len(suffix)]
                if param and "/" not in param:
                    return route, param
        return None


_JSON_TYPE = b"application/json"


def _parse_query(route: HotRoute, query_string: bytes) -> dict[str, object]:
    values = {name: default for name, (_, default) in route.query.items()}
    if not query_string:
        return values
    seen: set[str] = set()
    for pair in query_string.decode("latin-1").split("&"):
        name, eq, text = pair.partition("=")
        spec = route.query.get(name)
        if spec is None or not eq or name in seen:
            raise NotPlain(name)
        seen.add(name)
        values[name] = spec[0](text)
    return values


def _parse_body(route: HotRoute, scope: Scope, raw: bytes) -> object:
    if route.model is None:
        return raw
    kinds = [v for k, v in scope["headers"] if k == b"content-type"]
    if len(kinds) != 1 or kinds[0].split(b";", 1)[0].strip().lower() != _JSON_TYPE:
        raise NotPlain("content-type")
    try:
        return route.model.model_validate_json(raw)
    except ValidationError as exc:
        raise NotPlain("body") from exc


def _json_headers(body: bytes) -> Headers:
    return [(b"content-length", str(len(body)).encode("latin-1")), (b"content-type", _JSON_TYPE)]


async def _send(scope: Scope, send: Send, status: int, body: bytes, headers: Headers) -> None:
    cork: CorkedTransport | None = scope.get(CORK)
    if cork is None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    cork.cork()  # the status line, the headers and the body in one send (cork.py)
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    finally:
        cork.uncork()


async def _send_response(scope: Scope, send: Send, response: Response) -> None:
    await _send(scope, send, response.status_code, bytes(response.body), response.raw_headers)


class HotPath:
    """Serves the hot routes; hands everything it does not answer to `fallback` (the
    FastAPI app)."""

    def __init__(
        self, ctx: RelayContext, routes: HotRoutes, fallback: ASGIApp, limit: int, timeout: float
    ) -> None:
        self.ctx = ctx
        self.routes = routes
        self.fallback = fallback
        self.limit = limit
        self.timeout = timeout

    def find(self, scope: Scope) -> tuple[HotRoute, str] | None:
        return self.routes.find(scope)

    async def serve(
        self, found: tuple[HotRoute, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = await read_body(scope, receive, send, self.limit, self.timeout)
        if body is None:
            return
        with one_call():
            try:
                await self._serve(found, scope, receive, send, body)
            finally:
                # A signed agent call that made no store call still uses up its nonce.
                await self.ctx.spend_pending_nonce()

    async def _serve(
        self, found: tuple[HotRoute, str], scope: Scope, receive: Receive, send: Send, raw: bytes
    ) -> None:
        route, param = found
        try:
            identity = await establish_read(scope, raw, receive, self.ctx)
        except RelayHTTPError as exc:
            await _send_response(scope, send, error_response(exc))
            return
        try:
            query = _parse_query(route, scope["query_string"])
            body = _parse_body(route, scope, raw)
        except NotPlain:
            scope.setdefault("state", {})[IDENTITY] = identity
            scope[PREPARED] = True
            await self.fallback(scope, replaying(raw, receive), send)
            return
        call = HotCall(self.ctx, Request(scope, receive), identity, param, query, body, raw)
        try:
            result = await route.serve(call)
        except Exception as exc:
            response = answer(exc, route.name, self.ctx.metrics)
            if response is None:
                # As Starlette's ServerErrorMiddleware: a plain 500, then re-raised so
                # the server logs it.
                await _send_response(scope, send, PlainTextResponse("Internal Server Error", 500))
                raise
            await _send_response(scope, send, response)
            return
        if isinstance(result, Response):
            await _send_response(scope, send, result)
            return
        payload = result.model_dump_json().encode("utf-8")
        await _send(scope, send, route.status, payload, _json_headers(payload))
