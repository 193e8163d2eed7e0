"""The password policy the directory applies to one user (a fine-grained policy),
the tenant's switches (SSPR off, unlock not allowed), the contact-an-administrator
rate limit, and a whole reset with JavaScript turned off, in a real browser against
the real portal, relay, agent and Samba AD DC."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import HELPDESK, Stack
from tests.browser.helpers import INITIAL, User, make_user, register
from tests.browser.pages import (
    Browser,
    Done,
    Message,
    Methods,
    NewPassword,
    SignIn,
    Verify,
    WhoAreYou,
)
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login

pytestmark = pytest.mark.slow

# Passwords these tests type (test_zz_no_secrets_logged looks for them in every log).
TOO_SHORT_FOR_PSO = "Fresh-Pass9"
LONG_ENOUGH = "Twelve-Plus-Pass-42"
WITHOUT_SCRIPT = "No-Script-Pass-31"


@contextmanager
def _fine_grained_policy(env: DirectoryEnv, login: str, min_length: int) -> Iterator[None]:
    """A PSO that applies to this user only, with a longer minimum than the domain's 8,
    deleted afterwards (the domain is shared: a stricter PSO changes how the agent
    reads every user's policy, connectors/active_directory.py)."""
    dn = env.add_pso(unique_login("fg"), env.dn_of(login),  # type: ignore[attr-defined]
                     {"msDS-MinimumPasswordLength": str(min_length)})
    try:
        yield
    finally:
        env.admin().delete(dn)  # type: ignore[attr-defined]


def _verified(stack: Stack, b: Browser, user: User) -> None:
    WhoAreYou.open(b).submit(user.upn)
    Verify(b).choose("email").enter_code(stack.smtp.mailbox.code(user.email))
    Verify(b, "step-2").choose("app").enter_code(user.totp())


def test_fine_grained_minimum_and_the_name_rule(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    with _fine_grained_policy(stack.env, user.login, 12):
        _verified(stack, fresh, user)
        page = NewPassword(fresh, "fine-grained-policy")
        rules = page.requirements()
        assert "At least 12 characters" in rules, rules  # the PSO's, not the domain's 8
        assert fresh.el("requirements").get_attribute("data-min") == "12"  # the live check's
        page.choose(TOO_SHORT_FOR_PSO)  # 11 characters: the domain's 8 would take it
        refused = NewPassword(fresh, "refused-under-fine-grained-minimum")
        assert fresh.error() == "The new password is too short."
        refused.choose(f"Zz-{user.login.upper()}-42")  # the account name, in any case
        refused = NewPassword(fresh, "refused-contains-name")
        assert "your account name or parts of your full name" in fresh.error()
        refused.choose(LONG_ENOUGH)  # still without verifying again
        Done(fresh, "fine-grained-done")
        assert stack.env.bind(user.login, LONG_ENOUGH) is BindOutcome.OK


def test_tenant_switches_sspr_off_and_no_unlock(stack: Stack, fresh: Browser) -> None:
    policy = stack.services.settings.policy
    with stack.on_second_portal(
        fresh, policy=policy.model_copy(update={"sspr": "off", "allow_unlock": False})
    ):
        user = make_user(stack.env)  # matches the "p*" users the main portal enables
        WhoAreYou.open(fresh).submit(user.upn)
        Message(fresh, "Your account is not enabled for password reset")
        assert "not turned on self-service password reset" in fresh.text()
        fresh.go("/unlock")
        Message(fresh, "Unlocking isn't available here")
        assert "Reset your password instead" in fresh.text()


def test_contact_an_administrator_is_rate_limited(stack: Stack, fresh: Browser) -> None:
    other = make_user(stack.env, prefix="n")  # not enabled: the page offers contact
    for _ in range(3):  # contact.user = 3 per hour
        fresh.driver.delete_all_cookies()
        WhoAreYou.open(fresh).submit(other.upn)
        Message(fresh, "Your account is not enabled for password reset").contact_admin()
        Message(fresh, "We've let your administrator know")
    fresh.driver.delete_all_cookies()
    WhoAreYou.open(fresh).submit(other.upn)
    Message(fresh, "Your account is not enabled for password reset").contact_admin()
    Message(fresh, "Too many attempts")
    about = [m for m in stack.smtp.mailbox.to(HELPDESK) if other.upn in str(m["Subject"])]
    assert len(about) == 3


@contextmanager
def _no_javascript(b: Browser) -> Iterator[None]:
    b.driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        yield
    finally:
        b.driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_a_whole_reset_without_javascript(stack: Stack, fresh: Browser) -> None:
    user = register(stack.services, make_user(stack.env), email=True, app=True)
    fresh.go("/")  # a page of the portal's own, to turn scripts off on
    with _no_javascript(fresh):
        _verified(stack, fresh, user)
        page = NewPassword(fresh, "no-js")
        fresh.fill("new_password", WITHOUT_SCRIPT)
        # With scripts on, typing shows the strength meter; here the script never ran.
        assert not fresh.driver.find_element(By.ID, "meter").is_displayed()
        assert "At least 8 characters" in page.requirements()  # the rules are plain HTML
        page.choose(WITHOUT_SCRIPT)
        Done(fresh, "no-js-done")
    assert stack.env.bind(user.login, WITHOUT_SCRIPT) is BindOutcome.OK
    assert stack.env.bind(user.login, INITIAL) is BindOutcome.INVALID_CREDENTIALS


def test_development_outbox_is_off_unless_turned_on(stack: Stack, fresh: Browser) -> None:
    assert httpx.get(f"{stack.url}/dev/outbox").status_code == 404  # the tests' portal: off
    with stack.on_second_portal(fresh, dev_outbox=True):
        user = register(stack.services, make_user(stack.env), email=True, app=True)
        WhoAreYou.open(fresh).submit(user.upn)
        Verify(fresh).choose("email")
        code = stack.smtp.mailbox.code(user.email)  # still sent over SMTP as well
        fresh.go("/dev/outbox")
        Message(fresh, "Outbox")
        assert user.email in fresh.text() and code in fresh.text()


def test_office_phone_is_read_only_on_the_security_info_page(
    stack: Stack, fresh: Browser
) -> None:
    user = make_user(stack.env)
    policy = stack.services.settings.policy
    phones = {**policy.office_phones, user.upn: "+14255550188"}
    with stack.on_second_portal(fresh, policy=policy.model_copy(update={"office_phones": phones})):
        SignIn.open(fresh).sign_in(user.upn, INITIAL)
        methods = Methods(fresh, "methods-with-office-phone")
        row = methods.status("office_phone")
        assert "*88" in row and "Read-only" in row and "0188" not in row
        assert not fresh.driver.find_elements(By.ID, "setup-office_phone")  # nothing to edit


ONE_STEP_NEW = "One-Step-Pass-64"


def test_one_verification_step_when_the_policy_says_one(stack: Stack, fresh: Browser) -> None:
    policy = stack.services.settings.policy
    with stack.on_second_portal(fresh, policy=policy.model_copy(update={"methods_to_reset": 1})):
        user = register(stack.services, make_user(stack.env), email=True)  # one method
        WhoAreYou.open(fresh).submit(user.upn)
        verify = Verify(fresh, "one-step")
        assert fresh.heading() == "Verification step 1"  # no "of 2"
        verify.choose("email").enter_code(stack.smtp.mailbox.code(user.email))
        NewPassword(fresh, "after-one-step").choose(ONE_STEP_NEW)
        Done(fresh, "one-step-done")
    assert stack.env.bind(user.login, ONE_STEP_NEW) is BindOutcome.OK


def test_sspr_for_a_group_the_agents_enforce(
    stack: Stack, fresh: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """sspr = "group": the agents that serve this portal allow one directory group
    (`allowed_groups`, nested). Someone outside it reads "not enabled for password
    reset", at "Who are you?" and at registration; a member goes on to verify."""
    from agent.app import build_agent
    from agent.config import load_settings
    from tests.e2e.harness import enroll_agent_config

    env = stack.env
    member, outsider = make_user(env), make_user(env)
    register(stack.services, member, email=True, app=True)
    register(stack.services, outsider, email=True, app=True)
    group = env.create_group(unique_login("sspr"), [env.dn_of(member.login)])  # type: ignore[attr-defined]
    scoped = dict(stack.system.directories[0])
    scoped["scope"] = {**scoped.get("scope", {}), "allowed_groups": [group]}
    portal = stack.system.portal
    config = enroll_agent_config(
        tmp_path_factory.mktemp("group-agent"), portal.relay, portal.tenant, "sspr-group", [scoped]
    )
    agent = build_agent(load_settings(config))
    agent.start()
    policy = stack.services.settings.policy
    try:
        with stack.on_second_portal(
            fresh, agent_group="sspr-group", policy=policy.model_copy(update={"sspr": "group"})
        ):
            WhoAreYou.open(fresh).submit(outsider.upn)
            Message(fresh, "Your account is not enabled for password reset")
            fresh.driver.delete_all_cookies()
            SignIn.open(fresh).sign_in(outsider.upn, INITIAL)
            Message(fresh, "Your account is not enabled for password reset")
            fresh.driver.delete_all_cookies()
            WhoAreYou.open(fresh).submit(member.upn)
            Verify(fresh)  # a member: on to the verification steps
    finally:
        agent.stop(timeout=15)
