"""Page objects: one class per portal page, so a test reads like the user's steps.

Every page object's constructor checks that the browser is on that page (by its
heading) and saves a screenshot of it at a phone size and a desktop size.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

SIZES = (("phone", 390, 844, True), ("desktop", 1280, 900, False))


class Browser:
    def __init__(self, driver: WebDriver, base_url: str, artifacts: Path, services: Any) -> None:
        self.driver = driver
        self.base_url = base_url
        self.artifacts = artifacts
        self.services = services
        self.prefix = "page"
        self.counter = 0

    def go(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def session(self) -> dict[str, Any]:
        """The portal's server-side session for this browser (to read the captcha the
        way a person reads the picture)."""
        cookie = self.driver.get_cookie("wbp_session")
        assert cookie, "no portal session cookie"
        data = self.services.store.session_get(cookie["value"], time.time())
        assert data is not None
        return dict(data)

    def shot(self, name: str) -> None:
        """Full-page screenshots at phone and desktop sizes."""
        self.counter += 1
        stem = f"{self.prefix}-{self.counter:02d}-{name}"
        for label, width, height, mobile in SIZES:
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            full = int(self.driver.execute_script(
                "return Math.max(document.documentElement.scrollHeight, "
                "document.body.scrollHeight)"))
            metrics["height"] = max(height, full)
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            (self.artifacts / f"{stem}-{label}.png").write_bytes(base64.b64decode(shot["data"]))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # element helpers -------------------------------------------------------------
    def el(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def fill(self, element_id: str, value: str) -> None:
        field = self.el(element_id)
        field.clear()
        field.send_keys(value)

    def click(self, element_id: str) -> None:
        """Click a button or link that loads a page, and wait until the old one is gone
        (the next page may have the same heading, after a refusal)."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        for attempt in range(3):
            try:
                self.el(element_id).click()
                break
            except WebDriverException as exc:
                # Chromium now and then loses the element between find and click
                # ("Node with given id does not belong to the document"); the click did
                # not happen, so find it again.
                lost = isinstance(exc, StaleElementReferenceException) or (
                    "does not belong to the document" in str(exc)
                )
                if attempt == 2 or not lost:
                    raise
                time.sleep(0.2)
        WebDriverWait(self.driver, 30).until(lambda _driver: _gone(old))

    def select(self, element_id: str, text: str | None = None, value: str | None = None) -> None:
        chooser = Select(self.el(element_id))
        if value is not None:
            chooser.select_by_value(value)
        else:
            chooser.select_by_visible_text(text or "")

    def heading(self) -> str:
        try:
            found = WebDriverWait(self.driver, 15).until(
                lambda d: d.find_elements(By.TAG_NAME, "h1"))
        except TimeoutException:
            raise AssertionError(f"no heading on {self.driver.current_url}: "
                                 f"{self.driver.page_source[:500]}") from None
        return str(found[0].text)

    def error(self) -> str:
        found = self.driver.find_elements(By.ID, "error")
        return str(found[0].text) if found else ""

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "main").text)


def _gone(element: Any) -> bool:
    """The old page's root element is stale: the next page has loaded. Chromium reports
    that either as a stale element or as an inspector error ("Node with given id does
    not belong to the document"), depending on timing."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


class Page:
    HEADING = ""

    def __init__(self, b: Browser, shot: str | None = None) -> None:
        self.b = b
        heading = b.heading()
        assert self.HEADING in heading, (
            f"expected {self.HEADING!r}, on {heading!r}: {b.text()[:300]}")
        b.shot(shot or type(self).__name__)


class Home(Page):
    HEADING = "Get back into your account"

    @classmethod
    def open(cls, b: Browser) -> Home:
        b.go("/")
        return cls(b)


class WhoAreYou(Page):
    HEADING = "Who are you?"

    @classmethod
    def open(cls, b: Browser, mode: str = "reset") -> WhoAreYou:
        b.go("/unlock" if mode == "unlock" else "/reset")
        return cls(b)

    def captcha_text(self) -> str:
        return str(self.b.session()["captcha"])

    def submit(self, user: str, captcha: str | None = None) -> None:
        self.b.fill("user", user)
        self.b.fill("captcha", self.captcha_text() if captcha is None else captcha)
        self.b.click("next")


class Verify(Page):
    HEADING = "Verification step"

    def choose(self, kind: str) -> Verify:
        self.b.click(f"method-{kind}")
        return Verify(self.b, f"verify-{kind}")

    def masked(self) -> list[str]:
        return [e.text for e in self.b.driver.find_elements(By.CLASS_NAME, "method-masked")]

    def enter_code(self, code: str) -> None:
        self.b.fill("code", code)
        self.b.click("verify")

    def answer(self, answers: dict[str, str]) -> None:
        for label in self.b.driver.find_elements(By.CSS_SELECTOR, ".method-detail label"):
            target = label.get_attribute("for")
            assert target is not None, label.text
            self.b.fill(target, answers[label.text])
        self.b.click("verify")

    def phone(self, country: str, number: str, channel: str = "text-me") -> None:
        self.b.select("country", value=country)
        self.b.fill("number", number)
        self.b.click(channel)


class NewPassword(Page):
    HEADING = "Choose a new password"

    def requirements(self) -> list[str]:
        return [e.text for e in self.b.driver.find_elements(By.CSS_SELECTOR, "#requirements li")]

    def choose(self, password: str, confirm: str | None = None) -> None:
        self.b.fill("new_password", password)
        self.b.fill("confirm_password", password if confirm is None else confirm)
        self.b.shot("new-password-typed")
        self.b.click("finish")


class Done(Page):
    HEADING = ""


class Message(Page):
    """One of the pages that end a flow: title says which."""

    HEADING = ""

    def __init__(self, b: Browser, heading: str) -> None:
        self.HEADING = heading
        super().__init__(b, "message-" + heading.lower().replace(" ", "-")[:40])

    def contact_admin(self) -> None:
        self.b.click("contact-admin")


class SignIn(Page):
    HEADING = "Sign in"

    @classmethod
    def open(cls, b: Browser) -> SignIn:
        b.go("/register")
        return cls(b)

    def sign_in(self, user: str, password: str) -> None:
        self.b.fill("user", user)
        self.b.fill("password", password)
        self.b.click("sign-in")


class Methods(Page):
    HEADING = "Don't lose access to your account!"

    def status(self, kind: str) -> str:
        return str(self.b.el(f"row-{kind}").text)


class RegisterEmail(Page):
    HEADING = "Authentication email"


class RegisterPhone(Page):
    HEADING = "Authentication phone"


class RegisterApp(Page):
    HEADING = "Set up your authenticator app"

    def key(self) -> str:
        return str(self.b.el("totp-key").text).replace(" ", "")


class RegisterQuestions(Page):
    HEADING = "Security questions"


class Change(Page):
    HEADING = "Change password"

    @classmethod
    def open(cls, b: Browser) -> Change:
        b.go("/change")
        return cls(b)
