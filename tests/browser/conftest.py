"""The whole system for browser tests: a real Samba AD DC, the relay over HTTP, an
enrolled agent, an SMTP server, an SMS-provider receiver, the portal over HTTP, and
headless Chromium from Debian (`chromium`, `chromium-driver`) driven by selenium.

Screenshots of every page visited, at a phone and a desktop size, go to
tests/browser/artifacts/ (git-ignored; CI keeps it as an artifact).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from agent.logging import configure_logging
from cloud.portal.app import Services, build_services, create_app
from cloud.portal.crypto import generate_key_file
from cloud.portal.settings import load_settings
from tests.browser.pages import Browser
from tests.browser.servers import PortalServer, SmsReceiver, SmtpServer
from tests.e2e import harness
from tests.e2e.harness import AgentSystem, directory_entry, parent_dn
from tests.servers._process import free_port
from tests.servers.base import DirectoryEnv
from tests.servers.relay import start_relay

ARTIFACTS = Path(__file__).parent / "artifacts"
UPN = "wbtest.local"
HELPDESK = "helpdesk@help.example"
# The administrator set an office phone for this user (created by the phone test).
OFFICE_LOGIN = "pofficephone1"
OFFICE_PHONE = "+14255550123"
# Reset needs two methods; registration then needs two as well.
POLICY: dict[str, Any] = {
    "sspr": "selected",
    "selected_users": [f"p*@{UPN}"],  # users made with the "p" prefix are enabled
    "methods": ["email", "mobile_phone", "office_phone", "app", "questions"],
    "methods_to_reset": 2,
    "questions_to_register": 3,
    "questions_to_reset": 2,
    "reconfirm_days": 180,
    "allow_unlock": True,
    "helpdesk_email": HELPDESK,
    "office_phones": {f"{OFFICE_LOGIN}@{UPN}": OFFICE_PHONE},
}


def _need_browser() -> None:
    missing = [b for b in ("chromium", "chromedriver") if shutil.which(b) is None]
    if missing:
        message = (f"{', '.join(missing)} not found: apt-get install chromium chromium-driver "
                   "(scripts/bootstrap does)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Stack:
    env: DirectoryEnv
    system: AgentSystem
    services: Services
    portal: PortalServer
    smtp: SmtpServer
    sms: SmsReceiver
    log: io.StringIO
    relay_log: Any

    @property
    def url(self) -> str:
        return self.portal.url

    @contextlib.contextmanager
    def on_second_portal(self, browser: Browser, **changes: Any) -> Iterator[None]:
        """The browser talks to a second portal (`second_portal`) inside the block; its
        own portal again afterwards, with the second one stopped."""
        server, services = self.second_portal(**changes)
        base = browser.base_url
        browser.base_url = server.url
        try:
            yield
        finally:
            browser.base_url = base
            server.stop()
            services.close()

    def second_portal(self, **changes: Any) -> tuple[PortalServer, Services]:
        """Another portal on the same files with some settings changed (e.g. an agent
        group with no agent in it); the caller stops it."""
        settings = self.services.settings.model_copy(update=changes)
        services = build_services(settings)
        return PortalServer(create_app(settings, services)).start(), services


@pytest.fixture(scope="session")
def stack(samba_env: DirectoryEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _need_browser()
    log = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=log)  # portal and agent, one buffer
    harness.LOG_STREAM = log  # the agent CLI repoints logging; the harness points it back
    root = tmp_path_factory.mktemp("portal")
    relay = start_relay(root / "relay", lease_timeout=5, presence_timeout=5)
    secrets_dir = root / "secrets"
    secrets_dir.mkdir(mode=0o700)
    directories = [directory_entry(
        samba_env.settings, secrets_dir, name="main", base_dns=[parent_dn(samba_env.base_dn)],
        default=True, scope={"base_dns": [samba_env.base_dn]},
    )]
    system = AgentSystem.create(root / "agent", relay, directories)
    system.start_agent()
    # aiosmtpd (the users' mailbox, not the system under test) logs each mail line.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    smtp, sms = SmtpServer().start(), SmsReceiver().start()
    # The portal's files, as an operator would lay them out.
    conf = root / "portal"
    conf.mkdir()
    (conf / "relay.token").write_text(system.portal.token)
    system.portal.signer.save(conf / "portal.key")
    generate_key_file(conf / "at-rest.key")
    (conf / "sms.token").write_text("sms-webhook-token")
    document = {
        "organisation": "Contoso", "title": "Password reset",
        "tenant": system.portal.tenant, "agent_group": system.portal.group,
        "relay_url": relay.base_url, "relay_token_file": "relay.token",
        "signing_key_file": "portal.key", "secret_key_file": "at-rest.key",
        "data_dir": "data", "secure_cookies": False, "min_failure_seconds": 0.5,
        "policy": POLICY,
        # Every test browses from 127.0.0.1: per-address budgets for a whole session.
        "rate_limits": {f"{what}.ip": "10000/hour"
                        for what in ("signin", "captcha", "send", "check", "contact")},
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "sender": "no-reply@contoso.example"},
        "sms": {"webhook_url": sms.url, "token_file": str(conf / "sms.token")},
    }
    port = free_port()
    document["base_url"] = f"http://127.0.0.1:{port}"
    (conf / "portal.toml").write_text(tomli_w.dumps(document))
    settings = load_settings(conf / "portal.toml")
    services = build_services(settings)
    portal = PortalServer(create_app(settings, services), port).start()
    yield Stack(samba_env, system, services, portal, smtp, sms, log, relay.log)
    portal.stop()
    services.close()
    sms.stop()
    smtp.stop()
    system.close()
    relay.stop()


@pytest.fixture(scope="session")
def browser(stack: Stack) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # selenium logs every keystroke it sends at debug level: that is the test's own
    # keyboard, not the system under test, so keep it out of the log the secrets test reads.
    logging.getLogger("selenium").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=shutil.which("chromedriver")))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield Browser(driver, stack.url, ARTIFACTS, stack.services)
    finally:
        driver.quit()


@pytest.fixture
def fresh(browser: Browser, request: pytest.FixtureRequest) -> Browser:
    """A browser with no portal cookie, screenshots prefixed with the test's name."""
    browser.driver.delete_all_cookies()
    browser.prefix = request.node.name.removeprefix("test_")
    browser.counter = 0
    return browser


def wait_until(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
