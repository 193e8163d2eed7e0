"""Registration: sign in with the directory password (op authenticate), then set up
or confirm the methods the tenant allows, ending with "thanks".

A failed sign-in answers after the same delay whatever the reason (wrong password,
unknown user), and unknown users read exactly what wrong passwords read.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pyotp
import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr

from cloud.portal.agents import status_of
from cloud.portal.app import in_thread, services_of
from cloud.portal.crypto import normalise_answer
from cloud.portal.methods import COUNTRIES, BadNumber, masked, parse_phone
from cloud.portal.pages import not_managed_page, show
from cloud.portal.signin import SIGNIN_ERRORS
from cloud.portal.web import (
    SessionExpired,
    checked_form,
    client_ip,
    field_text,
    redirect,
    render,
    secret_field,
    session_of,
)
from cloud.sdk import Status

router = APIRouter()


def _signed_in(request: Request) -> str | None:
    user = session_of(request).data.get("signed_in")
    return user if isinstance(user, str) else None


@router.get("/register", response_class=HTMLResponse)
async def register(request: Request) -> Response:
    if _signed_in(request):
        return redirect("/register/methods")
    return render(request, "signin.html", error=None, user="", next="register")


async def sign_in(request: Request, user: str, password: str) -> Response | None:
    """None when signed in (session rotated); otherwise the page to show."""
    svc = services_of(request)
    started = time.monotonic()
    svc.limits.hit("signin", user=user, ip=client_ip(request))
    answer = await in_thread(svc.gateway.send, "authenticate", user,
                             old_password=SecretStr(password))
    status = status_of(answer)
    session = session_of(request)
    if status is Status.SUCCEEDED:
        session.clear_flow()
        session.rotate()
        session.data.update(signed_in=user, user=user, signed_in_at=time.time())
        return None
    session.data["user"] = user
    if status is Status.NOT_MANAGED:
        return show(request, not_managed_page(answer))
    if status in (Status.DIRECTORY_UNAVAILABLE, Status.IN_DOUBT):
        return show(request, "directory_unavailable")
    # Every failure takes as long as the slowest, so timing tells nothing either.
    await asyncio.sleep(max(0.0, svc.settings.min_failure_seconds - (time.monotonic() - started)))
    error = SIGNIN_ERRORS.get(status, SIGNIN_ERRORS[Status.INVALID_CREDENTIALS])
    return render(request, "signin.html", 400, error=error, user=user,
                  next=request.url.path.strip("/"))


@router.post("/register", response_class=HTMLResponse)
async def register_posted(request: Request) -> Response:
    form = await checked_form(request)
    user = field_text(form, "user").lower()
    page = await sign_in(request, user, secret_field(form, "password"))
    if page is not None:
        return page
    if not services_of(request).settings.policy.enabled_for(user):
        return show(request, "not_enabled")
    return redirect("/register/methods")


def _require(request: Request) -> str:
    user = _signed_in(request)
    if user is None:
        raise SessionExpired()
    return user


@router.get("/register/methods", response_class=HTMLResponse)
async def methods_page(request: Request, notice: str | None = None) -> Response:
    user = _require(request)
    svc = services_of(request)
    policy = svc.settings.policy
    registered = svc.store.methods(user)
    rows: list[tuple[str, str, bool]] = []
    for kind in policy.methods:
        if kind == "office_phone":
            number = policy.office_phones.get(user)
            rows.append((kind, masked_or(number), bool(number)))
            continue
        method = registered.get(kind)
        shown = masked(method) if method else ""
        if method and kind == "questions":
            shown = f"{len(method.data['items'])} questions"
        if method and kind == "app":
            shown = "Set up"
        rows.append((kind, shown, method is not None))
    count = sum(1 for _, _, ok in rows if ok)
    oldest = min((m.confirmed_at for m in registered.values()), default=time.time())
    stale = policy.reconfirm_days > 0 and time.time() - oldest > policy.reconfirm_days * 86400
    return render(request, "register_methods.html", rows=rows, count=count,
                  needed=policy.methods_to_register(), stale=stale, user=user, notice=notice)


def masked_or(number: str | None) -> str:
    return "" if not number else "*" * max(len(number) - 3, 4) + number[-2:]


@router.post("/register/confirm", response_class=HTMLResponse)
async def confirm(request: Request) -> Response:
    await checked_form(request)
    user = _require(request)
    svc = services_of(request)
    svc.store.methods_confirm(user, time.time())
    return render(request, "done.html", kind="registered")


# --------------------------------------------------------------------------- email / phone


def _pending(request: Request) -> dict[str, Any]:
    pending = session_of(request).data.get("register_pending")
    return pending if isinstance(pending, dict) else {}


@router.get("/register/email", response_class=HTMLResponse)
async def email_page(request: Request) -> Response:
    _require(request)
    return render(request, "register_email.html", pending=_pending(request).get("email"),
                  error=None)


@router.post("/register/email", response_class=HTMLResponse)
async def email_posted(request: Request) -> Response:
    form = await checked_form(request)
    user = _require(request)
    svc = services_of(request)
    address = field_text(form, "address", 254).lower()
    local, _, domain = address.partition("@")
    if not local or "." not in domain or " " in address:
        return render(request, "register_email.html", 400, pending=None,
                      error="Enter an email address like name@example.com.")
    svc.limits.hit("send", user=user, ip=client_ip(request))
    flow_id = secrets.token_hex(16)
    session_of(request).data["register_pending"] = {"email": address, "flow_id": flow_id}
    await in_thread(svc.verifier.email_code, f"{flow_id}:reg-email", address)
    return redirect("/register/email")


@router.get("/register/phone", response_class=HTMLResponse)
async def phone_page(request: Request) -> Response:
    _require(request)
    pending = _pending(request)
    return render(request, "register_phone.html", pending=pending.get("phone"),
                  channel=pending.get("channel"), countries=COUNTRIES, error=None)


@router.post("/register/phone", response_class=HTMLResponse)
async def phone_posted(request: Request) -> Response:
    form = await checked_form(request)
    user = _require(request)
    svc = services_of(request)
    try:
        number = parse_phone(field_text(form, "country"), field_text(form, "number", 40))
    except BadNumber as exc:
        return render(request, "register_phone.html", 400, pending=None, countries=COUNTRIES,
                      error=str(exc))
    svc.limits.hit("send", user=user, ip=client_ip(request))
    flow_id = secrets.token_hex(16)
    pending: dict[str, Any] = {"phone": number, "flow_id": flow_id, "channel": "text"}
    if field_text(form, "channel") == "call":
        token = secrets.token_urlsafe(24)
        svc.store.session_put(f"voice:{token}", {"confirmed": False}, time.time() + 600)
        pending.update(channel="call", voice_token=token)
        url = f"{svc.settings.base_url.rstrip('/')}/hooks/voice/{token}"
        await in_thread(svc.verifier.call, number, url)
    else:
        await in_thread(svc.verifier.text_code, f"{flow_id}:reg-phone", number)
    session_of(request).data["register_pending"] = pending
    return redirect("/register/phone")


@router.post("/register/verify", response_class=HTMLResponse)
async def verify_code(request: Request) -> Response:
    """The code sent to a new address or number; right -> the method is registered."""
    form = await checked_form(request)
    user = _require(request)
    svc = services_of(request)
    pending = _pending(request)
    kind = "email" if "email" in pending else "mobile_phone" if "phone" in pending else None
    if kind is None:
        return redirect("/register/methods")
    svc.limits.hit("check", user=user, ip=client_ip(request))
    template = "register_email.html" if kind == "email" else "register_phone.html"
    if pending.get("channel") == "call":
        record = svc.store.session_get(f"voice:{pending['voice_token']}", time.time())
        ok = bool(record and record.get("confirmed"))
        error = "We haven't heard that you pressed # yet."
    else:
        purpose = "reg-email" if kind == "email" else "reg-phone"
        result = svc.verifier.check_code(f"{pending['flow_id']}:{purpose}",
                                         field_text(form, "code"))
        ok = result.ok
        error = ("That code can no longer be used. Send a new one."
                 if result.expired or result.tries_left <= 0
                 else f"That code is not right. {result.tries_left} tries left.")
    if not ok:
        return render(request, template, 400, pending=pending.get("email") or pending.get("phone"),
                      channel=pending.get("channel"), countries=COUNTRIES, error=error)
    data = {"address": pending["email"]} if kind == "email" else {"number": pending["phone"]}
    svc.store.method_put(user, kind, data, time.time())
    session_of(request).data.pop("register_pending", None)
    return redirect("/register/methods")


# --------------------------------------------------------------------------- authenticator app


@router.get("/register/app", response_class=HTMLResponse)
async def app_page(request: Request, error: str | None = None) -> Response:
    user = _require(request)
    svc = services_of(request)
    session = session_of(request)
    sealed = session.data.get("totp_pending")
    if not isinstance(sealed, str):
        sealed = session.data["totp_pending"] = svc.verifier.secrets.seal(
            pyotp.random_base32(), user)
    secret = svc.verifier.secrets.open(sealed, user)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=svc.settings.organisation)
    svg = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render(request, "register_app.html", qr=svg, key=grouped, error=error)


@router.post("/register/app", response_class=HTMLResponse)
async def app_posted(request: Request) -> Response:
    form = await checked_form(request)
    user = _require(request)
    svc = services_of(request)
    session = session_of(request)
    sealed = session.data.get("totp_pending")
    if not isinstance(sealed, str):
        return redirect("/register/app")
    svc.limits.hit("check", user=user, ip=client_ip(request))
    if not svc.verifier.totp_ok(sealed, user, field_text(form, "code")):
        return await app_page(request, "That code didn't work. Enter the 6-digit code your "
                              "app shows now.")
    svc.store.method_put(user, "app", {"secret": sealed}, time.time())
    session.data.pop("totp_pending", None)
    return redirect("/register/methods")


# --------------------------------------------------------------------------- security questions


@router.get("/register/questions", response_class=HTMLResponse)
async def questions_page(request: Request) -> Response:
    _require(request)
    policy = services_of(request).settings.policy
    return render(request, "register_questions.html", questions=policy.questions,
                  count=policy.questions_to_register, chosen=[], error=None)


@router.post("/register/questions", response_class=HTMLResponse)
async def questions_posted(request: Request) -> Response:
    form = await checked_form(request)
    user = _require(request)
    svc = services_of(request)
    policy = svc.settings.policy
    n = policy.questions_to_register
    chosen = [field_text(form, f"question{i}", 300) for i in range(n)]
    answers = [field_text(form, f"answer{i}", 200) for i in range(n)]
    error = _questions_error(chosen, answers, policy.questions)
    if error:
        return render(request, "register_questions.html", 400, questions=policy.questions,
                      count=n, chosen=chosen, error=error)
    hashed = await in_thread(lambda: [svc.verifier.secrets.hash_answer(a) for a in answers])
    items = [{"q": q, "h": h} for q, h in zip(chosen, hashed, strict=True)]
    svc.store.method_put(user, "questions", {"items": items}, time.time())
    return redirect("/register/methods")


def _questions_error(chosen: list[str], answers: list[str], allowed: list[str]) -> str | None:
    if any(q not in allowed for q in chosen):
        return "Choose a question from the list for each one."
    if len(set(chosen)) != len(chosen):
        return "Choose a different question each time."
    normalised = [normalise_answer(a) for a in answers]
    if any(len(a) < 3 for a in normalised):
        return "Each answer needs at least 3 letters or digits."
    if len(set(normalised)) != len(normalised):
        return "Use a different answer for each question."
    return None

