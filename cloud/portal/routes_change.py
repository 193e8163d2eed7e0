"""Change: a user who knows the current password sets a new one (op change; the
directory checks the old password, history and the policy)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr

from cloud.portal.agents import status_of
from cloud.portal.app import in_thread, services_of
from cloud.portal.pages import PAGE_FOR_STATUS, show
from cloud.portal.passwords import requirements
from cloud.portal.signin import SIGNIN_ERRORS
from cloud.portal.web import (
    checked_form,
    client_ip,
    field_text,
    render,
    secret_field,
    session_of,
)
from cloud.sdk import Result, Status

router = APIRouter()

@router.get("/change", response_class=HTMLResponse)
async def change_page(request: Request) -> Response:
    user = session_of(request).data.get("signed_in") or ""
    return render(request, "change.html", user=user, error=None, rules=None)


@router.post("/change", response_class=HTMLResponse)
async def change_posted(request: Request) -> Response:
    form = await checked_form(request)
    svc = services_of(request)
    session = session_of(request)
    user = field_text(form, "user").lower()
    old = secret_field(form, "current_password")
    new, confirm = secret_field(form, "new_password"), secret_field(form, "confirm_password")
    rules = None
    if not user or not old or not new:
        error = "Fill in every field."
    elif new != confirm:
        error = "The two new passwords don't match."
    else:
        started = time.monotonic()
        svc.limits.hit("signin", user=user, ip=client_ip(request))
        session.data["user"] = user
        answer = await in_thread(svc.gateway.send, "change", user,
                                 old_password=SecretStr(old), new_password=SecretStr(new))
        del old, new, confirm
        status = status_of(answer)
        if status is Status.SUCCEEDED:
            return render(request, "done.html", kind="changed")
        if status in PAGE_FOR_STATUS and status is not Status.ACCOUNT_DISABLED:
            return show(request, PAGE_FOR_STATUS[status])
        if status is Status.POLICY_VIOLATION:
            error = answer.message if isinstance(answer, Result) else ""
            rules = requirements((answer.policy if isinstance(answer, Result) else None) or {})
        else:
            await asyncio.sleep(
                max(0.0, svc.settings.min_failure_seconds - (time.monotonic() - started)))
            wrong = status in (Status.WRONG_OLD_PASSWORD, Status.USER_NOT_FOUND,
                               Status.AMBIGUOUS_USER)
            error = SIGNIN_ERRORS.get(status, "We couldn't change your password. Try again "
                                      "later.") if not wrong else (
                "Your user ID or current password is incorrect.")
    return render(request, "change.html", 400, user=user, error=error, rules=rules)
