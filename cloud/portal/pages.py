"""The pages that end a flow with news the user did not want, in our own words.

One table, so the same status always reads the same wherever it arises. Each page
says what happened, what to do next, and (where an administrator must act) offers
"contact an administrator", which emails the tenant's help desk.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import HTMLResponse

from cloud.portal.web import render, session_of
from cloud.sdk import Status
from wire.status import NotManagedReason


@dataclass(frozen=True)
class Page:
    heading: str
    lines: tuple[str, ...]
    status_code: int = 200
    contact: bool = False  # offer "contact an administrator"
    retry: bool = False  # offer "start again"


PAGES: dict[str, Page] = {
    "not_managed": Page(
        "Please contact your administrator",
        ("Your password is managed by your organisation's on-premises directory and can't "
         "be reset here.",
         "Your administrator or IT help desk can reset it for you."),
        contact=True,
    ),
    "not_enabled": Page(
        "Your account is not enabled for password reset",
        ("Your organisation has not turned on self-service password reset for your account.",
         "Ask your administrator to reset your password, or to enable password reset for you."),
        contact=True,
    ),
    "could_not_verify": Page(
        "We could not verify your account",
        ("Your account is enabled for password reset, but we don't have enough verification "
         "information for it.",
         "Sign in and register your verification methods once you can, or ask your "
         "administrator to reset your password."),
        contact=True,
    ),
    "directory_unavailable": Page(
        "We can't reach your organisation's directory right now",
        ("Nothing was changed. This is usually brief: please try again in a few minutes.",
         "If it keeps happening, let your administrator know."),
        status_code=503, contact=True, retry=True,
    ),
    "in_doubt": Page(
        "We could not confirm the change",
        ("Your request reached your organisation, but we did not hear back in time, so we "
         "can't tell whether your password was changed.",
         "Try signing in with your new password. If that does not work, start again."),
        retry=True,
    ),
    "superseded": Page(
        "A newer request was used instead",
        ("Another password change for your account, made after this one, was applied first.",
         "Your password is the one you set most recently. If that was not you, contact your "
         "administrator."),
        contact=True,
    ),
    "session_expired": Page(
        "Your session has expired",
        ("For your security, a password reset has to be finished within a few minutes.",
         "Nothing was changed. Please start again."),
        status_code=410, retry=True,
    ),
    "form_refused": Page(
        "This form can't be accepted",
        ("The page you sent was not the one we gave you, or it is too old.",
         "Go back to the start and try again."),
        status_code=403, retry=True,
    ),
    "rate_limited": Page(
        "Too many attempts",
        ("For your security, we've paused this for a while.",
         "Please wait 15 minutes before you try again."),
        status_code=429,
    ),
    "account_disabled": Page(
        "Your account is disabled",
        ("A disabled account can't be used or reset here.",
         "Contact your administrator if you think this is a mistake."),
        contact=True,
    ),
    "unlock_not_enabled": Page(
        "Unlocking isn't available here",
        ("Your organisation does not let accounts be unlocked without a password reset.",
         "Reset your password instead: that also unlocks your account."),
    ),
    "internal_error": Page(
        "Something went wrong",
        ("Nothing was changed. Please try again later.",),
        status_code=500, contact=True, retry=True,
    ),
}


# Statuses with a page of their own, wherever they arise. (Where the user has not
# proved who they are yet, a disabled account gets no page of its own: the reset
# preflight shows "could not verify", the change form the sign-in wording.)
def not_managed_page(answer: object) -> str:
    """A user outside the agents' allowed groups is not enabled for password reset
    (the tenant's SSPR group); any other not_managed rule: contact the administrator."""
    reason = getattr(answer, "reason", None)
    return "not_enabled" if reason == NotManagedReason.NOT_IN_ALLOWED_GROUP else "not_managed"


PAGE_FOR_STATUS: dict[Status, str] = {
    Status.NOT_MANAGED: "not_managed",
    Status.DIRECTORY_UNAVAILABLE: "directory_unavailable",
    Status.IN_DOUBT: "in_doubt",
    Status.SUPERSEDED: "superseded",
    Status.ACCOUNT_DISABLED: "account_disabled",
}

def show(request: Request, name: str, *, restart: str = "/") -> HTMLResponse:
    page = PAGES[name]
    session = session_of(request)
    settings = request.app.state.settings
    # Contact needs someone to write to and a user to write about.
    can_contact = (page.contact and bool(settings.policy.helpdesk_email)
                   and bool(session.data.get("user")))
    return render(request, "message.html", page.status_code, message=page, kind=name,
                  can_contact=can_contact, restart=restart)
