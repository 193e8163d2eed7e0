"""Change, phones (text and call), and the pages for a directory that can't be reached
and an expired session, in a real browser against the real system."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import OFFICE_LOGIN, OFFICE_PHONE, UPN, Stack
from tests.browser.helpers import INITIAL, User, make_user, register
from tests.browser.pages import Browser, Change, Done, Message, Verify, WhoAreYou
from tests.servers.base import BindOutcome

pytestmark = pytest.mark.slow

NEW = "Changed-Secret-77"


def test_change_password(stack: Stack, fresh: Browser) -> None:
    user = make_user(stack.env)
    page = Change.open(fresh)
    _change(fresh, user.upn, "Not-The-Password-1", NEW)
    Change(fresh, "change-wrong-current")
    assert fresh.error() == "Your user ID or current password is incorrect."
    _change(fresh, user.upn, INITIAL, "short")
    Change(fresh, "change-too-short")
    assert "too short" in fresh.error()
    rules = fresh.driver.find_elements("css selector", ".requirements li")
    assert any("At least 8" in li.text for li in rules)
    assert any("last 3 passwords" in li.text for li in rules)  # a change checks the history
    _change(fresh, user.upn, INITIAL, INITIAL)  # the password it has now
    Change(fresh, "change-history")
    assert fresh.error() == ("The new password was used recently. Choose one you have not "
                             "used before.")
    _change(fresh, user.upn, INITIAL, NEW)
    Done(fresh, "changed")
    assert fresh.heading() == "Your password has been changed"
    assert stack.env.bind(user.login, NEW) is BindOutcome.OK
    del page


def _change(b: Browser, user: str, current: str, new: str) -> None:
    b.fill("user", user)
    b.fill("current_password", current)
    b.fill("new_password", new)
    b.fill("confirm_password", new)
    b.click("submit")


def test_reset_with_mobile_text_and_office_call(stack: Stack, fresh: Browser) -> None:
    stack.env.create_user(OFFICE_LOGIN, INITIAL, given_name="Olle", surname="Berg")
    user = register(stack.services, User(OFFICE_LOGIN, f"{OFFICE_LOGIN}@{UPN}", "x@home.example"),
                    email=False, phone="+46701234567")
    WhoAreYou.open(fresh).submit(user.upn)
    verify = Verify(fresh)
    masked = verify.masked()  # mobile, then office: only the last two digits shown
    assert [m[-2:] for m in masked] == ["67", "23"]
    assert all(set(m[:-2]) == {"*"} for m in masked)
    step = verify.choose("mobile_phone")
    step.phone("SE", "070 999 99 99")  # not the registered number: nothing is sent
    Verify(fresh, "phone-mismatch")
    assert "doesn't match" in fresh.error()
    sent_before = len(stack.sms.received)
    fresh.click("method-mobile_phone")  # choose again, then the right number
    step = Verify(fresh, "mobile-number")
    assert len(stack.sms.received) == sent_before
    step.phone("SE", "070-123 45 67")
    step = Verify(fresh, "mobile-code")
    step.enter_code(stack.sms.last_code("+46701234567"))

    step = Verify(fresh, "step-2").choose("office_phone")
    step.phone("US", "(425) 555-0123", channel="call-me")
    Verify(fresh, "office-calling")
    call = stack.sms.received[-1]
    assert (call["kind"], call["to"]) == ("voice", OFFICE_PHONE)
    assert "press the pound key" in call["text"]
    fresh.click("verify")  # not answered yet
    Verify(fresh, "call-not-answered")
    assert "pressed #" in fresh.error()
    assert httpx.post(call["callback_url"], json={"digits": "#"}).status_code == 401  # no token
    answered = httpx.post(call["callback_url"], json={"digits": "#"},
                          headers={"Authorization": "Bearer sms-webhook-token"})
    assert answered.status_code == 200
    fresh.click("verify")
    from tests.browser.pages import NewPassword
    NewPassword(fresh).choose("Phone-Reset-Pass-9")
    Done(fresh, "phone-reset-done")
    assert stack.env.bind(OFFICE_LOGIN, "Phone-Reset-Pass-9") is BindOutcome.OK


def test_session_expired_page(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    WhoAreYou.open(fresh).submit(user.upn)
    Verify(fresh)
    cookie = fresh.driver.get_cookie("wbp_session")
    assert cookie is not None
    stack.services.store.session_delete(cookie["value"])
    fresh.click("method-email")
    Message(fresh, "Your session has expired")


def test_directory_unavailable_page(stack: Stack, fresh: Browser) -> None:
    """A portal whose agent group has no agent online: the relay queues nothing and
    the user is told to try later, with nothing changed."""
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    with stack.on_second_portal(fresh, agent_group="empty-group"):
        WhoAreYou.open(fresh).submit(user.upn)
        page = Message(fresh, "We can't reach your organisation's directory right now")
        assert "Nothing was changed" in fresh.text()
        page.contact_admin()
        Message(fresh, "We've let your administrator know")


IN_DOUBT_NEW = "In-Doubt-Pass-58"


def test_in_doubt_page_when_the_answer_never_comes(stack: Stack, fresh: Browser) -> None:
    """The reset is queued but its agent is stopped: the portal stops waiting and says
    it can't tell; the agent, started again, carries it out, as the page suggests."""
    from tests.browser.conftest import wait_until
    from tests.browser.pages import NewPassword

    user = register(stack.services, make_user(stack.env), email=True, app=True)
    WhoAreYou.open(fresh).submit(user.upn)
    Verify(fresh).choose("email").enter_code(stack.smtp.mailbox.code(user.email))
    Verify(fresh, "step-2").choose("app").enter_code(user.totp())
    NewPassword(fresh)
    # The same session store, a portal that waits 2 s for an answer: the browser's
    # cookie (host 127.0.0.1, any port) carries the verified flow over to it.
    stack.system.stop_agent()
    try:
        # Stopped but still online for the relay: the request is queued, not refused.
        with (stack.on_second_portal(fresh, agent_timeout_seconds=2.0),
              stack.system.present_while_stopped()):
            fresh.go("/reset/password")
            NewPassword(fresh, "agent-stopped").choose(IN_DOUBT_NEW)
            page = Message(fresh, "We could not confirm the change")
            assert "Try signing in with your new password" in fresh.text()
            assert page.b.driver.find_elements("id", "start-again")
    finally:
        stack.system.start_agent()
    wait_until(lambda: stack.env.bind(user.login, IN_DOUBT_NEW) is BindOutcome.OK, timeout=30)
