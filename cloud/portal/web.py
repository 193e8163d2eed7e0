"""Sessions, CSRF, rate limits and page rendering: the plumbing every route shares.

Sessions live server-side (the store); the cookie holds only a random id:
HttpOnly, SameSite=Strict, Secure unless the portal is a loopback http demo. A new
id is issued at sign-in and whenever a flow starts (`rotate`), so an id planted
before sign-in is worthless after it. Every form carries the session's CSRF token;
a POST without the right one is refused before its route runs.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import FormData

from cloud.portal.store import Store

COOKIE = "wbp_session"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class FormRefused(Exception):
    """A POST without the session's CSRF token (or with no session at all)."""


class SessionExpired(Exception):
    """The flow's session is gone (timed out, or the cookie was cleared)."""


class RateLimited(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class Session:
    sid: str
    data: dict[str, Any] = field(default_factory=dict)
    fresh: bool = True  # no valid session arrived with the request
    had_cookie: bool = False  # a cookie arrived, but its session is gone: expired
    old_sid: str | None = None

    @property
    def csrf(self) -> str:
        token = self.data.get("csrf")
        if not isinstance(token, str):
            token = self.data["csrf"] = secrets.token_urlsafe(24)
        return token

    def rotate(self) -> None:
        """A new id for the same data, and a new CSRF token (sign-in, flow start)."""
        self.old_sid = self.old_sid or self.sid
        self.sid = secrets.token_urlsafe(32)
        self.data["csrf"] = secrets.token_urlsafe(24)

    def clear_flow(self) -> None:
        csrf = self.data.get("csrf")
        self.data.clear()
        if csrf:
            self.data["csrf"] = csrf


def load_session(request: Request, store: Store) -> Session:
    sid = request.cookies.get(COOKIE)
    if sid:
        data = store.session_get(sid, time.time())
        if data is not None:
            return Session(sid, data, fresh=False, had_cookie=True)
    return Session(secrets.token_urlsafe(32), {}, fresh=True, had_cookie=bool(sid))


def save_session(
    response: Response, session: Session, store: Store, *, minutes: int, secure: bool
) -> None:
    if session.old_sid is not None:
        store.session_delete(session.old_sid)
    store.session_put(session.sid, session.data, time.time() + minutes * 60)
    response.set_cookie(
        COOKIE, session.sid, max_age=minutes * 60, httponly=True, secure=secure,
        samesite="strict", path="/",
    )


def session_of(request: Request) -> Session:
    session: Session = request.state.session
    return session


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its CSRF token is checked against the session's."""
    form = await request.form()
    session = session_of(request)
    sent = form.get("csrf")
    if session.fresh:
        # No session: either it expired mid-flow (a cookie came) or the form was forged.
        raise SessionExpired() if session.had_cookie else FormRefused()
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise FormRefused()
    return form


def field_text(form: FormData, name: str, limit: int = 256) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def secret_field(form: FormData, name: str, limit: int = 512) -> str:
    """A password as typed (not stripped: spaces may be part of it)."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session = session_of(request)
    settings = request.app.state.settings
    context.setdefault("title", settings.title)
    return TEMPLATES.TemplateResponse(
        request, name,
        {"csrf": session.csrf, "settings": settings, "page": name.removesuffix(".html"),
         **context},
        status_code=status_code,
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


DEFAULT_LIMITS: dict[str, str] = {
    # what.user / what.ip: a person gets a few tries; an address (an office behind one
    # NAT) gets more. Override in portal.toml [rate_limits].
    "signin.user": "10/15minutes", "signin.ip": "60/15minutes",
    "captcha.user": "20/15minutes", "captcha.ip": "100/15minutes",
    "send.user": "5/15minutes", "send.ip": "40/15minutes",
    "check.user": "15/15minutes", "check.ip": "100/15minutes",
    "contact.user": "3/hour", "contact.ip": "20/hour",
}


class Limits:
    """Per-user and per-IP budgets (the `limits` package, moving windows, in memory:
    one portal process; several replicas would point it at shared storage)."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        unknown = sorted(set(overrides or {}) - set(DEFAULT_LIMITS))
        if unknown:
            raise ValueError(f"unknown rate limit(s) {unknown}; known: {sorted(DEFAULT_LIMITS)}")
        rules = {**DEFAULT_LIMITS, **(overrides or {})}
        self._rules: dict[str, RateLimitItem] = {k: parse(v) for k, v in rules.items()}

    def hit(self, what: str, *, user: str | None = None, ip: str | None = None) -> None:
        for scope, key in (("user", user), ("ip", ip)):
            if key and not self._limiter.hit(self._rules[f"{what}.{scope}"], what, scope,
                                             key.lower()):
                raise RateLimited(what)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
