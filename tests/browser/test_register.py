"""Registration in a real browser: sign in with the directory password (op
authenticate through relay and agent to Samba), then email (code from a real SMTP
server), authenticator app (TOTP from the key shown next to the QR code), security
questions and a phone (code from the SMS provider's webhook), and "thanks"."""

from __future__ import annotations

import time

import httpx
import pyotp
import pytest

from tests.browser.conftest import Stack
from tests.browser.helpers import ANSWERS, INITIAL, make_user, register
from tests.browser.pages import (
    Browser,
    Done,
    Methods,
    RegisterApp,
    RegisterEmail,
    RegisterPhone,
    RegisterQuestions,
    SignIn,
)
from tests.servers.base import BindOutcome

pytestmark = pytest.mark.slow


def test_register_email_app_questions_and_phone(  # noqa: PLR0915 (one user's whole registration)
    stack: Stack, fresh: Browser
) -> None:
    user = make_user(stack.env)
    before = fresh.driver.get_cookie("wbp_session")
    SignIn.open(fresh).sign_in(user.upn, INITIAL)
    methods = Methods(fresh)
    after = fresh.driver.get_cookie("wbp_session")
    assert after and (before is None or after["value"] != before["value"])  # rotated
    assert after["httpOnly"] and after["sameSite"] == "Strict"
    assert "Not configured" in methods.status("email")
    assert fresh.el("looks-good").get_attribute("disabled") is not None

    fresh.click("setup-email")
    RegisterEmail(fresh)
    fresh.fill("address", user.email)
    fresh.click("email-me")
    RegisterEmail(fresh, "email-code-sent")
    fresh.fill("code", stack.smtp.mailbox.code(user.email))
    fresh.click("verify")
    methods = Methods(fresh, "methods-with-email")
    assert "*****@home.example" in methods.status("email")

    fresh.click("setup-app")
    app = RegisterApp(fresh)
    key = app.key()
    assert fresh.el("qr").get_attribute("src").startswith("data:image/svg+xml")
    fresh.fill("code", "000000" if pyotp.TOTP(key).now() != "000000" else "111111")
    fresh.click("verify")
    assert "didn't work" in fresh.error()
    assert RegisterApp(fresh, "app-wrong-code").key() == key  # the same secret, kept
    fresh.fill("code", pyotp.TOTP(key).now())
    fresh.click("verify")
    Methods(fresh, "methods-with-app")

    fresh.click("setup-questions")
    RegisterQuestions(fresh)
    questions = list(ANSWERS)
    for i in range(3):
        fresh.select(f"question{i}", text=questions[0])  # the same question three times...
        fresh.fill(f"answer{i}", ANSWERS[questions[i]])
    fresh.click("save-answers")
    RegisterQuestions(fresh, "questions-repeated")
    assert "different question" in fresh.error()
    for i in range(3):
        fresh.select(f"question{i}", text=questions[i])
        fresh.fill(f"answer{i}", "Volvo")  # ...then the same answer three times
    fresh.click("save-answers")
    RegisterQuestions(fresh, "answers-repeated")
    assert "different answer" in fresh.error()
    for i in range(3):
        fresh.select(f"question{i}", text=questions[i])
        fresh.fill(f"answer{i}", ANSWERS[questions[i]])
    fresh.click("save-answers")
    Methods(fresh, "methods-with-questions")
    stored = stack.services.store.methods(user.upn)["questions"].data["items"]
    assert all(item["h"].startswith("$argon2") for item in stored)
    assert not any(a.lower() in str(stored).lower() for a in ANSWERS.values())
    sealed = stack.services.store.methods(user.upn)["app"].data["secret"]
    assert key not in sealed  # encrypted at rest

    fresh.click("setup-phone")
    RegisterPhone(fresh)
    fresh.select("country", value="SE")
    fresh.fill("number", "070-123 45 67")
    fresh.click("text-me")
    RegisterPhone(fresh, "phone-code-sent")
    assert stack.sms.auth[-1] == "Bearer sms-webhook-token"
    fresh.fill("code", stack.sms.last_code("+46701234567"))
    fresh.click("verify")
    methods = Methods(fresh, "methods-all")
    assert "67" in methods.status("mobile_phone")

    fresh.click("looks-good")
    Done(fresh, "thanks")
    assert fresh.heading() == "Thanks!"
    assert stack.env.bind(user.login, INITIAL) is BindOutcome.OK  # nothing changed


def test_sign_in_failures_say_the_same_for_unknown_users(stack: Stack, fresh: Browser) -> None:
    user = make_user(stack.env)
    SignIn.open(fresh).sign_in(user.upn, "Not-The-Password-1")
    SignIn(fresh, "signin-wrong-password")
    wrong = fresh.error()
    fresh.driver.delete_all_cookies()
    SignIn.open(fresh).sign_in(f"pnobody-{user.login}@wbtest.local", "Not-The-Password-1")
    SignIn(fresh, "signin-unknown-user")
    assert fresh.error() == wrong == "Your user ID or password is incorrect."


def test_sign_in_counts_toward_the_directory_lockout(stack: Stack, fresh: Browser) -> None:
    user = make_user(stack.env)
    for _ in range(3):  # the Samba fixture locks after 3 bad passwords
        fresh.driver.delete_all_cookies()
        SignIn.open(fresh).sign_in(user.upn, "Not-The-Password-1")
    fresh.driver.delete_all_cookies()
    SignIn.open(fresh).sign_in(user.upn, INITIAL)
    SignIn(fresh, "signin-locked")
    assert "locked" in fresh.error()
    assert stack.env.bind(user.login, INITIAL) is BindOutcome.LOCKED


def test_register_a_phone_by_call(stack: Stack, fresh: Browser) -> None:
    """"Call me" while registering: nothing to type, the callee presses # on the call."""
    user = make_user(stack.env)
    SignIn.open(fresh).sign_in(user.upn, INITIAL)
    Methods(fresh)
    fresh.click("setup-phone")
    RegisterPhone(fresh)
    fresh.select("country", value="GB")
    fresh.fill("number", "07400 123456")
    fresh.click("call-me")
    RegisterPhone(fresh, "phone-calling")
    assert "We're calling +447400123456" in fresh.text()
    assert not fresh.driver.find_elements("id", "code")  # a call carries no code
    call = stack.sms.received[-1]
    assert (call["kind"], call["to"]) == ("voice", "+447400123456")
    fresh.click("verify")  # not answered yet
    RegisterPhone(fresh, "phone-call-not-answered")
    assert "pressed #" in fresh.error()
    answered = httpx.post(call["callback_url"], json={"digits": "#"},
                          headers={"Authorization": "Bearer sms-webhook-token"})
    assert answered.status_code == 200
    fresh.click("verify")
    methods = Methods(fresh, "methods-phone-by-call")
    assert "******56" in methods.status("mobile_phone")
    assert stack.services.store.methods(user.upn)["mobile_phone"].data["number"] == "+447400123456"


def test_methods_confirmed_long_ago_are_confirmed_again(stack: Stack, fresh: Browser) -> None:
    """The tenant's re-confirm period (180 days here): a user whose methods were last
    confirmed 181 days ago is asked to check them after signing in; "Looks good"
    confirms them, and the next sign-in does not ask again."""
    user = make_user(stack.env)
    register(stack.services, user, email=True, app=True, at=time.time() - 181 * 86400)
    SignIn.open(fresh).sign_in(user.upn, INITIAL)
    Methods(fresh, "methods-stale")
    assert "It's been a while" in fresh.text()
    fresh.click("looks-good")
    Done(fresh, "thanks-reconfirmed")
    assert fresh.heading() == "Thanks!"
    fresh.driver.delete_all_cookies()
    SignIn.open(fresh).sign_in(user.upn, INITIAL)
    Methods(fresh, "methods-fresh")
    assert "It's been a while" not in fresh.text()
