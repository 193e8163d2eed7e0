"""Home, captcha media, contact-an-administrator, sign-out, the development outbox
and the voice provider's callback."""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cloud.portal import captchas
from cloud.portal.app import in_thread, services_of
from cloud.portal.pages import PAGES
from cloud.portal.web import (
    checked_form,
    client_ip,
    field_text,
    redirect,
    render,
    session_of,
)

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return render(request, "home.html")


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})


@router.get("/captcha.png")
async def captcha_image(request: Request) -> Response:
    text = session_of(request).data.get("captcha")
    if not isinstance(text, str):
        return Response(status_code=404)
    return Response(await in_thread(captchas.image, text), media_type="image/png")


@router.get("/captcha.wav")
async def captcha_audio(request: Request) -> Response:
    text = session_of(request).data.get("captcha")
    if not isinstance(text, str):
        return Response(status_code=404)
    return Response(await in_thread(captchas.audio, text), media_type="audio/wav")


@router.post("/contact", response_class=HTMLResponse)
async def contact_admin(request: Request) -> Response:
    """Email the help desk that this user asked for help, saying from which page."""
    form = await checked_form(request)
    svc = services_of(request)
    session = session_of(request)
    user = session.data.get("user")
    helpdesk = svc.settings.policy.helpdesk_email
    kind = field_text(form, "kind", 64)
    if not isinstance(user, str) or not helpdesk or kind not in PAGES:
        return redirect("/")
    svc.limits.hit("contact", user=user, ip=client_ip(request))
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    await in_thread(
        svc.mailer.send, helpdesk, f"Password reset: {user} asked for help",
        f"The user {user} asked for help with their password at {when}.\n\n"
        f"They were shown: \"{PAGES[kind].heading}\".\n"
        f"Their address as seen by the portal: {client_ip(request)}.\n\n"
        "Nothing was changed. Please contact them through a channel you trust.\n",
    )
    svc.log.info("portal.contact_admin", user=user, page=kind)
    return render(request, "contacted.html")


@router.post("/signout")
async def signout(request: Request) -> Response:
    await checked_form(request)
    session = session_of(request)
    session.clear_flow()
    session.rotate()
    return redirect("/")


@router.get("/dev/outbox", response_class=HTMLResponse)
async def outbox(request: Request) -> Response:
    svc = services_of(request)
    if svc.outbox is None:
        return Response(status_code=404)
    return render(request, "outbox.html", items=svc.outbox.items(), now=time.time())


@router.post("/hooks/voice/{token}")
async def voice_answered(token: str, request: Request) -> Response:
    """The provider says the callee pressed a key. The token in the URL is
    single-purpose and unguessable, and the provider authenticates with the same
    Bearer token the portal sends it; only "#" confirms."""
    svc = services_of(request)
    expected = svc.settings.read_secret(svc.settings.sms.token_file)
    if expected is not None:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent, f"Bearer {expected.get_secret_value()}"):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "bad json"}, status_code=400)
    record = svc.store.session_get(f"voice:{token}", time.time())
    if record is None:
        return JSONResponse({"error": "unknown"}, status_code=404)
    if isinstance(body, dict) and body.get("digits") == "#":
        svc.store.session_put(f"voice:{token}", {"confirmed": True}, time.time() + 600)
    return JSONResponse({"ok": True})
