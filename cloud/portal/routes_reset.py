"""Reset and unlock: who are you (+ captcha) -> 1 or 2 verification steps -> choose a
new password (or unlock) -> done.

Session state of the flow (session.data["reset"]): the mode, how many steps the
policy needs, which methods are done, when verification completed (the password may
be chosen again within `retry_window_minutes` after a refusal without verifying
again), and the policy the agent's preflight reported.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr

from cloud.portal import captchas
from cloud.portal.agents import status_of
from cloud.portal.app import Services, in_thread, services_of
from cloud.portal.methods import COUNTRIES, LABELS, BadNumber, masked, parse_phone, usable_methods
from cloud.portal.pages import PAGE_FOR_STATUS, not_managed_page, show
from cloud.portal.passwords import requirements
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
from cloud.sdk import Result, Status

router = APIRouter()

def _flow(request: Request) -> dict[str, Any]:
    flow = session_of(request).data.get("reset")
    if not isinstance(flow, dict):
        raise SessionExpired()
    return flow


def _who_are_you(request: Request, mode: str, error: str | None = None,
                 user: str = "") -> Response:
    session = session_of(request)
    session.data["captcha"] = captchas.new_text()
    return render(request, "reset_who.html", mode=mode, error=error, user=user,
                  stamp=secrets.token_hex(4))


@router.get("/reset", response_class=HTMLResponse)
async def who(request: Request, mode: str = "reset") -> Response:
    mode = "unlock" if mode == "unlock" else "reset"
    if mode == "unlock" and not services_of(request).settings.policy.allow_unlock:
        return show(request, "unlock_not_enabled")
    return _who_are_you(request, mode)


@router.get("/unlock", response_class=HTMLResponse)
async def unlock_start(request: Request) -> Response:
    return redirect("/reset?mode=unlock")


@router.post("/reset", response_class=HTMLResponse)
async def who_posted(request: Request) -> Response:
    form = await checked_form(request)
    svc = services_of(request)
    session = session_of(request)
    mode = "unlock" if field_text(form, "mode") == "unlock" else "reset"
    user = field_text(form, "user").lower()
    svc.limits.hit("captcha", ip=client_ip(request))
    expected = session.data.pop("captcha", None)
    if not captchas.matches(expected, field_text(form, "captcha")):
        return _who_are_you(request, mode, "The characters you entered didn't match. "
                            "Try the new picture.", user)
    if not user or ("@" not in user and svc.settings.user_id_kind == "upn"):
        return _who_are_you(request, mode, "Enter your user ID, for example "
                            "name@example.com.", user)
    svc.limits.hit("captcha", user=user)
    session.clear_flow()
    session.rotate()
    session.data["user"] = user
    policy = svc.settings.policy
    if not policy.enabled_for(user):
        return show(request, "not_enabled")
    if mode == "unlock" and not policy.allow_unlock:
        return show(request, "unlock_not_enabled")
    answer = await in_thread(svc.gateway.send, "preflight", user)
    status = status_of(answer)
    if status is Status.NOT_MANAGED:
        return show(request, not_managed_page(answer))
    if status in PAGE_FOR_STATUS and status is not Status.ACCOUNT_DISABLED:
        return show(request, PAGE_FOR_STATUS[status])
    if status is not Status.SUCCEEDED:
        # Unknown, ambiguous or disabled users meet the same page as unregistered ones.
        return show(request, "could_not_verify")
    preflight_policy = answer.policy if isinstance(answer, Result) else None
    registered = svc.store.methods(user)
    available = usable_methods(registered, policy.methods, policy.office_phones.get(user))
    if len(available) < policy.methods_to_reset:
        return show(request, "could_not_verify")
    session.data["reset"] = {
        "mode": mode, "needed": policy.methods_to_reset, "done": [], "pending": None,
        "verified_at": None, "policy": preflight_policy or {}, "flow_id": secrets.token_hex(16),
    }
    return redirect("/reset/verify")


def _available(svc: Services, user: str) -> dict[str, Any]:
    policy = svc.settings.policy
    return usable_methods(svc.store.methods(user), policy.methods,
                          policy.office_phones.get(user))


@router.get("/reset/verify", response_class=HTMLResponse)
async def verify_page(request: Request, error: str | None = None) -> Response:
    flow = _flow(request)
    if flow["verified_at"] is not None:
        return redirect("/reset/password")
    svc = services_of(request)
    user = session_of(request).data["user"]
    methods = {k: m for k, m in _available(svc, user).items() if k not in flow["done"]}
    return render(
        request, "reset_verify.html", flow=flow, step=len(flow["done"]) + 1,
        choices=[(k, LABELS[k], masked(m)) for k, m in methods.items()],
        pending=flow["pending"], error=error, countries=COUNTRIES,
    )


@router.post("/reset/verify/choose", response_class=HTMLResponse)
async def choose(request: Request) -> Response:
    form = await checked_form(request)
    flow = _flow(request)
    svc = services_of(request)
    user = session_of(request).data["user"]
    kind = field_text(form, "method")
    methods = _available(svc, user)
    if kind not in methods or kind in flow["done"]:
        return redirect("/reset/verify")
    pending: dict[str, Any] = {"kind": kind, "sent": False}
    if kind == "email":
        svc.limits.hit("send", user=user, ip=client_ip(request))
        await in_thread(svc.verifier.email_code, f"{flow['flow_id']}:email",
                        methods[kind].data["address"])
        pending["sent"] = True
    elif kind == "questions":
        items = methods[kind].data["items"]
        count = min(svc.settings.policy.questions_to_reset, len(items))
        pending["questions"] = [i["q"] for i in secrets.SystemRandom().sample(items, count)]
    flow["pending"] = pending
    return redirect("/reset/verify")


@router.post("/reset/verify/send", response_class=HTMLResponse)
async def send_phone(request: Request) -> Response:
    """Phones: the user types the full number first; only a match is sent anything."""
    form = await checked_form(request)
    flow = _flow(request)
    svc = services_of(request)
    user = session_of(request).data["user"]
    pending = flow.get("pending") or {}
    kind = pending.get("kind")
    methods = _available(svc, user)
    if kind not in ("mobile_phone", "office_phone") or kind not in methods:
        return redirect("/reset/verify")
    svc.limits.hit("send", user=user, ip=client_ip(request))
    try:
        typed = parse_phone(field_text(form, "country"), field_text(form, "number", 40))
    except BadNumber:
        typed = ""
    if not secrets.compare_digest(typed, str(methods[kind].data["number"])):
        return await verify_page(request, "That number doesn't match the one we have.")
    channel = "call" if kind == "office_phone" or field_text(form, "channel") == "call" else "text"
    if channel == "text":
        await in_thread(svc.verifier.text_code, f"{flow['flow_id']}:{kind}", typed)
    else:
        token = secrets.token_urlsafe(24)
        svc.store.session_put(f"voice:{token}", {"confirmed": False}, time.time() + 600)
        pending["voice_token"] = token
        url = f"{svc.settings.base_url.rstrip('/')}/hooks/voice/{token}"
        await in_thread(svc.verifier.call, typed, url)
    pending.update(sent=True, channel=channel)
    return redirect("/reset/verify")


@router.post("/reset/verify/check", response_class=HTMLResponse)
async def check(request: Request) -> Response:
    form = await checked_form(request)
    flow = _flow(request)
    svc = services_of(request)
    user = session_of(request).data["user"]
    pending = flow.get("pending") or {}
    kind = pending.get("kind")
    methods = _available(svc, user)
    if kind not in methods:
        return redirect("/reset/verify")
    svc.limits.hit("check", user=user, ip=client_ip(request))
    ok, error = await in_thread(_check_method, svc, flow, user=user, kind=kind, methods=methods,
                                pending=pending, form=form)
    if not ok:
        return await verify_page(request, error)
    flow["done"].append(kind)
    flow["pending"] = None
    if len(flow["done"]) < flow["needed"]:
        return redirect("/reset/verify")
    flow["verified_at"] = time.time()
    if flow["mode"] == "unlock":
        return await _unlock(request, svc, user)
    return redirect("/reset/password")


def _check_method(svc: Services, flow: dict[str, Any], *, user: str, kind: str,
                  methods: dict[str, Any], pending: dict[str, Any], form: Any) -> tuple[bool, str]:
    if kind == "app":
        ok = svc.verifier.totp_ok(methods[kind].data["secret"], user, field_text(form, "code"))
        return ok, "That code didn't work. Enter the current code from your app."
    if kind == "questions":
        answers = {q: field_text(form, f"answer{i}") for i, q in enumerate(pending["questions"])}
        ok = svc.verifier.answers_ok(methods[kind], answers)
        return ok, "One or more of your answers didn't match. Try again."
    if pending.get("channel") == "call":
        record = svc.store.session_get(f"voice:{pending.get('voice_token')}", time.time())
        ok = bool(record and record.get("confirmed"))
        return ok, "We haven't heard that you pressed # yet. Answer the call, then try again."
    result = svc.verifier.check_code(f"{flow['flow_id']}:{kind}", field_text(form, "code"))
    if result.ok:
        return True, ""
    if result.expired or result.tries_left <= 0:
        pending["sent"] = False
        return False, "That code can no longer be used. Choose the method again for a new code."
    return False, f"That code is not right. {result.tries_left} tries left."


async def _unlock(request: Request, svc: Services, user: str) -> Response:
    answer = await in_thread(svc.gateway.send, "unlock", user)
    status = status_of(answer)
    if status is Status.SUCCEEDED:
        session_of(request).data.pop("reset", None)
        return render(request, "done.html", kind="unlocked")
    return show(request, PAGE_FOR_STATUS.get(status, "internal_error"))


def _verified_flow(request: Request) -> dict[str, Any]:
    flow = _flow(request)
    window = services_of(request).settings.retry_window_minutes * 60
    if flow.get("verified_at") is None or flow["mode"] != "reset":
        raise SessionExpired()
    if time.time() - flow["verified_at"] > window:
        session_of(request).data.pop("reset", None)
        raise SessionExpired()
    return flow


@router.get("/reset/password", response_class=HTMLResponse)
async def password_page(request: Request) -> Response:
    flow = _verified_flow(request)
    return render(request, "reset_password.html", rules=requirements(flow["policy"], reset=True),
                  policy=flow["policy"], error=None)


@router.post("/reset/password", response_class=HTMLResponse)
async def password_posted(request: Request) -> Response:
    form = await checked_form(request)
    flow = _verified_flow(request)
    svc = services_of(request)
    user = session_of(request).data["user"]
    new, confirm = secret_field(form, "new_password"), secret_field(form, "confirm_password")
    error = None
    if not new:
        error = "Enter a new password."
    elif new != confirm:
        error = "The two passwords don't match."
    if error is None:
        answer = await in_thread(svc.gateway.send, "reset", user, new_password=SecretStr(new),
                                 unlock=svc.settings.policy.allow_unlock)
        del new, confirm
        status = status_of(answer)
        if status is Status.SUCCEEDED:
            session_of(request).data.pop("reset", None)
            return render(request, "done.html", kind="reset")
        if status is not Status.POLICY_VIOLATION:
            return show(request, PAGE_FOR_STATUS.get(status, "internal_error"))
        if isinstance(answer, Result):
            flow["policy"] = answer.policy or flow["policy"]
            error = answer.message
    return render(request, "reset_password.html", 400,
                  rules=requirements(flow["policy"], reset=True), policy=flow["policy"],
                  error=error)
