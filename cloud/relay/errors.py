"""Every error the relay answers, mapped to HTTP in one place.

Routes raise; nothing below the app catches to translate. The handlers registered by
`install` (and the hot path, hotpath.py, through the same `answer`) turn each
exception into our JSON shape `{"error": <stable code>,
"message": ...}` (never echoing input: it could be an enrollment code or a sealed
envelope). What is mapped::

    RelayHTTPError          as raised (auth, validation the routes do themselves)
    ReplayedCall            401 replayed (a signed agent call's nonce was used before)
    StoreError              by the table below (class, and route name where the same
     +-- DuplicateError       store error means different things to different routes)
     +-- NotFoundError
     +-- LeaseLost
     +-- EnrollmentError      its `.reason` is the code
    InvalidPortalKey        422 invalid_portal_key
    RequestValidationError  422 invalid_request (400 invalid_json when not JSON at all)
    HTTPException           FastAPI/Starlette's own (404 route, 405, body not UTF-8)

`ERROR_RESPONSES` documents the shape in OpenAPI for every route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from cloud.relay.admin import InvalidPortalKey
from cloud.relay.auth import RelayHTTPError, ReplayedCall
from cloud.relay.models import ErrorBody
from cloud.relay.store import (
    DuplicateError,
    EnrollmentError,
    LeaseLost,
    NotFoundError,
    StoreError,
)

if TYPE_CHECKING:
    from cloud.relay.metrics import RelayMetrics

log = structlog.get_logger("writeback.relay")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}

# (store error class, route name or "") -> (HTTP status, code, message). The route
# name is the endpoint function's name; "" is the default for the class.
_STORE_ERRORS: dict[tuple[type[StoreError], str], tuple[int, str, str]] = {
    (DuplicateError, ""): (409, "duplicate", "it exists already"),
    (DuplicateError, "submit"): (409, "duplicate_id", "this request id was submitted before"),
    (DuplicateError, "create_tenant"): (409, "tenant_exists", "the tenant exists already"),
    (DuplicateError, "add_portal_key"): (
        409,
        "portal_key_exists",
        "another key is registered under this kid",
    ),
    (NotFoundError, ""): (404, "unknown_tenant", "no such tenant"),
    (NotFoundError, "remove_agent"): (404, "unknown_agent", "no such agent"),
    (LeaseLost, ""): (409, "lease_lost", "the lease is no longer held by this agent"),
    (EnrollmentError, ""): (403, "", "ask the relay admin for a new code"),
}
_UNMAPPED = (500, "internal_error", "the relay could not complete this call")


def error_response(exc: RelayHTTPError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.code, "message": exc.message, **exc.extra}
    headers = dict(exc.headers)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", "WBA1")
    return JSONResponse(body, status_code=exc.status, headers=headers or None)


def translate_store_error(exc: StoreError, route: str) -> RelayHTTPError:
    for cls in type(exc).__mro__:
        if not (isinstance(cls, type) and issubclass(cls, StoreError)):
            continue
        entry = _STORE_ERRORS.get((cls, route)) or _STORE_ERRORS.get((cls, ""))
        if entry is not None:
            status, code, message = entry
            if isinstance(exc, EnrollmentError):
                code = exc.reason
            return RelayHTTPError(status, code, message)
    return RelayHTTPError(*_UNMAPPED)


def _route_name(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "name", "") or "")


REPLAYED = RelayHTTPError(401, "replayed", "this signed call was used before")


def answer(exc: Exception, route: str, metrics: RelayMetrics) -> JSONResponse | None:
    """Our answer to an exception a route raised (`route`: its endpoint function's
    name), or None when it is not one of ours (a 500). Shared by the app's handlers
    and the hot path (hotpath.py)."""
    if isinstance(exc, RelayHTTPError):
        if exc.status == 429:
            metrics.rate_limited.labels(exc.code).inc()
        return error_response(exc)
    if isinstance(exc, StoreError):
        mapped = translate_store_error(exc, route)
        if isinstance(exc, EnrollmentError):
            log.warning("agent.enroll_refused", error=exc.reason)
        elif mapped.status >= 500:
            log.error("store.error", error=type(exc).__name__, route=route)
        return error_response(mapped)
    if isinstance(exc, ReplayedCall):
        return error_response(REPLAYED)
    if isinstance(exc, InvalidPortalKey):
        return error_response(RelayHTTPError(422, "invalid_portal_key", str(exc)))
    return None


async def _ours(request: Request, exc: Exception) -> JSONResponse:
    response = answer(exc, _route_name(request), request.app.state.relay.metrics)
    if response is None:  # only registered for our classes
        raise exc
    return response


async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(RelayHTTPError(400, "invalid_json", "the body is not JSON"))
    fields = sorted({".".join(str(p) for p in e.get("loc", ())) for e in errors})
    return error_response(
        RelayHTTPError(422, "invalid_request", f"bad or missing: {', '.join(fields)}")
    )


async def _http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    """FastAPI's own refusals in our shape (its 400 for a body that is not UTF-8, 404
    for an unknown path, 405)."""
    codes = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    message = "the body is not UTF-8 JSON" if exc.status_code == 400 else str(exc.detail)
    return error_response(
        RelayHTTPError(exc.status_code, code, message, headers=dict(exc.headers or {}))
    )


_HANDLERS: tuple[tuple[type[Exception], Any], ...] = (
    (RelayHTTPError, _ours),
    (StoreError, _ours),
    (ReplayedCall, _ours),
    (InvalidPortalKey, _ours),
    (RequestValidationError, _invalid_body),
    (HTTPException, _http_exception),
)


def install(app: FastAPI) -> None:
    """Register the handlers (Starlette picks the most specific class per exception)."""
    for exc_class, handler in _HANDLERS:
        app.add_exception_handler(exc_class, handler)
