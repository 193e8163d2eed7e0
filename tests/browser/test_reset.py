"""Reset and unlock in a real browser: captcha, two verification steps, a refused
password with its reason, success, and the user then signs in to the directory with
the new password. Against the real portal, relay, agent and Samba AD DC."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import Stack
from tests.browser.helpers import INITIAL, User, make_user, register
from tests.browser.pages import Browser, Done, Home, Message, NewPassword, Verify, WhoAreYou
from tests.servers.base import BindOutcome

pytestmark = pytest.mark.slow

NEW = "Browser-Fresh-42x"


def _start(b: Browser, user: User, mode: str = "reset") -> Verify:
    WhoAreYou.open(b, mode).submit(user.upn)
    return Verify(b)


def test_reset_with_two_steps_refusal_then_success(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    Home.open(fresh)
    verify = _start(fresh, user)
    masked = verify.masked()
    assert any(m.startswith(user.email[:2]) and "*****@home.example" in m for m in masked), masked
    assert user.email not in fresh.text()  # only the masked form is shown

    step = verify.choose("email")
    step.enter_code(stack.smtp.mailbox.code(user.email))
    step2 = Verify(fresh, "verify-step-2")
    assert "Verification step 2 of 2" in fresh.heading()
    step2.choose("app").enter_code(user.totp())

    page = NewPassword(fresh)
    rules = page.requirements()
    assert "At least 8 characters" in rules  # the domain policy, from the agent's preflight
    # The history rule is listed only where resets enforce it (the agent says whether
    # the DC honours the policy-hints control; Samba 4.17 does not).
    enforced = fresh.session()["reset"]["policy"]["history_on_reset"]
    assert any("last 3 passwords" in r for r in rules) is enforced
    page.choose("Short1a")
    refused = NewPassword(fresh, "refused-too-short")
    assert "too short" in fresh.error()
    refused.choose(NEW, confirm=NEW + "x")
    mismatch = NewPassword(fresh, "refused-mismatch")
    assert "don't match" in fresh.error()
    mismatch.choose(NEW)  # retried without verifying again

    Done(fresh, "reset-done")
    assert fresh.heading() == "Your password has been reset"
    text = fresh.text()
    assert "VPN" in text and "lock your computer" in text
    assert stack.env.bind(user.login, NEW) is BindOutcome.OK
    assert stack.env.bind(user.login, INITIAL) is BindOutcome.INVALID_CREDENTIALS


def test_wrong_captcha_is_refused_with_a_new_picture(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    who = WhoAreYou.open(fresh)
    first = who.captcha_text()
    picture = fresh.el("captcha-image").get_attribute("src")
    who.submit(user.upn, captcha="WRONG")
    again = WhoAreYou(fresh, "wrong-captcha")
    assert "didn't match" in fresh.error()
    assert fresh.el("user").get_attribute("value") == user.upn  # kept, only the captcha is new
    # A new picture (and characters) each time: one answer per picture. (Two draws of
    # 5 from 24 characters match once in ~8 million.)
    assert again.captcha_text() != first
    assert fresh.el("captcha-image").get_attribute("src") != picture
    again.submit(user.upn, captcha=first)  # the old picture's answer no longer counts
    WhoAreYou(fresh, "old-captcha-refused")
    assert "didn't match" in fresh.error()
    # The audio form of the same captcha: a WAV file served to this session only.
    cookie = fresh.driver.get_cookie("wbp_session")
    assert cookie is not None
    wav = httpx.get(f"{stack.url}/captcha.wav", cookies={"wbp_session": cookie["value"]})
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    assert httpx.get(f"{stack.url}/captcha.wav").status_code == 404


def test_wrong_code_five_times(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    step = _start(fresh, user).choose("email")
    code = stack.smtp.mailbox.code(user.email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for tries_left in (4, 3, 2, 1):
        step.enter_code(wrong)
        step = Verify(fresh, f"wrong-code-{tries_left}-left")
        assert f"{tries_left} tries left" in fresh.error()
    step.enter_code(wrong)
    step = Verify(fresh, "code-used-up")
    assert "can no longer be used" in fresh.error()
    step.b.fill("code", code)  # even the right code is refused now
    step.b.click("verify")
    Verify(fresh, "right-code-too-late")
    assert "can no longer be used" in fresh.error()


def test_unlock_a_locked_account(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, questions=True)
    stack.env.lock(user.login)
    assert stack.env.bind(user.login, INITIAL) is BindOutcome.LOCKED
    verify = _start(fresh, user, "unlock")
    assert "unlock your account" in fresh.text().lower()
    verify.choose("email").enter_code(stack.smtp.mailbox.code(user.email))
    step = Verify(fresh, "unlock-step-2").choose("questions")
    from tests.browser.helpers import ANSWERS
    step.answer({q: a.upper() + " " for q, a in ANSWERS.items()})  # case and spaces don't matter
    Done(fresh, "unlocked")
    assert fresh.heading() == "Your account is unlocked"
    assert stack.env.bind(user.login, INITIAL) is BindOutcome.OK


def test_error_pages_and_contact_admin(stack: Stack, fresh: Browser) -> None:
    # Not managed: the agent's scope leaves this account out.
    outside = register(stack.services, make_user(stack.env, outside_base=True))
    _who(fresh, outside.upn)
    page = Message(fresh, "Please contact your administrator")
    page.contact_admin()
    Message(fresh, "We've let your administrator know")
    mail = stack.smtp.mailbox.wait_for("helpdesk@help.example")
    assert outside.upn in str(mail["Subject"])

    # Not enabled: the tenant's policy enables only users matching p*@...
    other = make_user(stack.env, prefix="n")
    _who(fresh, other.upn)
    Message(fresh, "Your account is not enabled for password reset")

    # Could not verify: enabled, but registered only one of the two methods needed...
    one = register(stack.services, make_user(stack.env), email=True)
    _who(fresh, one.upn)
    Message(fresh, "We could not verify your account")
    # ...and an unknown user reads exactly the same page.
    _who(fresh, f"pnobody-{one.login}@wbtest.local")
    Message(fresh, "We could not verify your account")


def _who(b: Browser, upn: str) -> None:
    b.driver.delete_all_cookies()
    WhoAreYou.open(b).submit(upn)


def test_form_without_csrf_token_is_refused(stack: Stack, fresh: Browser) -> None:
    user = make_user(stack.env)
    WhoAreYou.open(fresh)
    fresh.driver.execute_script("document.querySelector('input[name=csrf]').remove()")
    fresh.fill("user", user.upn)
    fresh.fill("captcha", str(fresh.session()["captcha"]))
    fresh.click("next")
    Message(fresh, "This form can't be accepted")
    assert "403" not in fresh.heading()


def test_sending_codes_is_rate_limited_per_user(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    verify = _start(fresh, user)
    for _ in range(5):  # send.user = 5 per 15 minutes
        verify = verify.choose("email")
    stack.smtp.mailbox.wait_for(user.email, count=5)
    fresh.click("method-email")
    Message(fresh, "Too many attempts")
    assert len(stack.smtp.mailbox.to(user.email)) == 5
