"""The portal application: build it from one PortalSettings (cloud/portal/cli.py
does, from portal.toml) and serve it with uvicorn.

    app = create_app(settings)      # or create_app(settings, services=...) in tests

Errors map to pages in one place (the exception handlers below): a form without
its CSRF token, an expired session, a rate limit, a delivery failure.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from cloud.portal.agents import AgentGateway
from cloud.portal.crypto import Secrets
from cloud.portal.delivery import DeliveryError, Mailer, Outbox, WebhookPhoneProvider
from cloud.portal.methods import Verifier
from cloud.portal.pages import show
from cloud.portal.settings import PortalSettings
from cloud.portal.store import Store, open_store
from cloud.portal.web import (
    FormRefused,
    Limits,
    RateLimited,
    SessionExpired,
    load_session,
    save_session,
)
from cloud.relay.client import PortalClient
from cloud.sdk import PortalSigner


@dataclass
class Services:
    """Everything a route needs, built once at start and kept on app.state."""

    settings: PortalSettings
    store: Store
    gateway: AgentGateway
    verifier: Verifier
    mailer: Mailer
    limits: Limits
    outbox: Outbox | None
    log: Any

    def close(self) -> None:
        self.gateway.close()
        self.store.close()


def build_services(settings: PortalSettings) -> Services:
    log = structlog.get_logger("writeback.portal")
    outbox = Outbox() if settings.dev_outbox else None
    store = open_store(settings)
    token = settings.read_secret(settings.relay_token_file)
    if token is None:
        raise ValueError("relay_token_file is required")
    client = PortalClient(
        settings.relay_url, token.get_secret_value(),
        verify=str(settings.relay_ca_file) if settings.relay_ca_file else True,
        timeout=settings.agent_timeout_seconds,
    )
    gateway = AgentGateway(settings, client, PortalSigner.load(settings.signing_key_file), log)
    mailer = Mailer(settings.smtp, settings.read_secret(settings.smtp.password_file), outbox)
    phones = WebhookPhoneProvider(settings.sms, settings.read_secret(settings.sms.token_file),
                                  outbox)
    secrets_ = Secrets.from_file(settings.secret_key_file)
    verifier = Verifier(store, secrets_, mailer, phones, settings.organisation)
    return Services(settings, store, gateway, verifier, mailer, Limits(settings.rate_limits),
                    outbox, log)


def create_app(settings: PortalSettings, services: Services | None = None) -> FastAPI:
    from cloud.portal import routes_change, routes_misc, routes_register, routes_reset

    svc = services or build_services(settings)
    app = FastAPI(title=settings.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.services = svc
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")
    for module in (routes_misc, routes_reset, routes_register, routes_change):
        app.include_router(module.router)

    @app.middleware("http")
    async def sessions(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        session = load_session(request, svc.store)
        request.state.session = session
        request.state.nonce = secrets.token_urlsafe(12)
        response = await call_next(request)
        if not request.url.path.startswith("/static/"):
            save_session(response, session, svc.store, minutes=settings.session_minutes,
                         secure=settings.secure_cookies)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; media-src 'self'; "
            "style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'"
        )
        return response

    @app.exception_handler(FormRefused)
    async def _refused(request: Request, exc: FormRefused) -> HTMLResponse:
        svc.log.warning("portal.form_refused", path=request.url.path)
        return show(request, "form_refused")

    @app.exception_handler(SessionExpired)
    async def _expired(request: Request, exc: SessionExpired) -> HTMLResponse:
        return show(request, "session_expired")

    @app.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited) -> HTMLResponse:
        svc.log.warning("portal.rate_limited", what=exc.what, path=request.url.path)
        return show(request, "rate_limited")

    @app.exception_handler(DeliveryError)
    async def _delivery(request: Request, exc: DeliveryError) -> HTMLResponse:
        svc.log.error("portal.delivery_failed", detail=str(exc))
        return show(request, "internal_error")

    return app


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking work (the relay round trip, SMTP, argon2) off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def services_of(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
