"""The portal's pieces that need no server: the store contract (codes single use,
5 tries, 10 minutes), secrets at rest, the policy file, masking, and the pages for
answers no real directory gives on demand (in_doubt, superseded)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from cloud.portal.app import Services, create_app
from cloud.portal.crypto import Secrets, normalise_answer
from cloud.portal.methods import BadNumber, mask_email, mask_phone, parse_phone
from cloud.portal.settings import PortalSettings, TenantPolicy, load_settings
from cloud.portal.store import SqliteStore
from cloud.portal.web import COOKIE, Limits
from cloud.sdk import Status


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "portal.sqlite3")
    yield s
    s.close()


def test_code_is_single_use(store: SqliteStore) -> None:
    now = time.time()
    store.code_put("flow:email", "right", now + 600, 5)
    assert store.code_check("flow:email", "right", now).ok
    assert not store.code_check("flow:email", "right", now).ok  # used


def test_code_five_tries_then_gone(store: SqliteStore) -> None:
    now = time.time()
    store.code_put("k", "right", now + 600, 5)
    lefts = [store.code_check("k", "wrong", now).tries_left for _ in range(5)]
    assert lefts == [4, 3, 2, 1, 0]
    assert not store.code_check("k", "right", now).ok


def test_code_expires_after_ten_minutes(store: SqliteStore) -> None:
    now = time.time()
    store.code_put("k", "right", now + 600, 5)
    late = store.code_check("k", "right", now + 601)
    assert not late.ok and late.expired


def test_sessions_expire(store: SqliteStore) -> None:
    store.session_put("sid", {"a": 1}, time.time() + 1)
    assert store.session_get("sid", time.time()) == {"a": 1}
    assert store.session_get("sid", time.time() + 5) is None


def test_secrets_at_rest() -> None:
    secrets = Secrets(b"k" * 32)
    sealed = secrets.seal("JBSWY3DPEHPK3PXP", "alice@x")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert secrets.open(sealed, "alice@x") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(Exception):  # noqa: B017 (cryptography's InvalidTag)
        secrets.open(sealed, "mallory@x")  # bound to its user
    stored = secrets.hash_answer("  Sir  Whiskers! ")
    assert stored.startswith("$argon2") and "whiskers" not in stored.lower()
    assert secrets.check_answer(stored, "sir whiskers")
    assert not secrets.check_answer(stored, "sir whisker")
    assert normalise_answer("Göteborg,  SWEDEN") == "göteborg sweden"
    assert repr(secrets) == "Secrets(<hidden>)"


def test_masks_and_numbers() -> None:
    assert mask_email("maja.lindgren@home.example") == "ma*****@home.example"
    assert mask_phone("+46701234567") == "*********67"
    assert parse_phone("SE", "070-123 45 67") == "+46701234567"
    with pytest.raises(BadNumber):
        parse_phone("US", "12")


def test_policy_file(tmp_path: Path) -> None:
    (tmp_path / "portal.toml").write_text(
        'tenant = "acme"\nrelay_url = "https://relay.example"\nrelay_token_file = "token"\n'
        'signing_key_file = "portal.key"\nsecret_key_file = "at-rest.key"\ndata_dir = "data"\n'
        '[policy]\nsspr = "selected"\nselected_users = ["*@sales.acme.example"]\n'
        'methods_to_reset = 2\n'
    )
    settings = load_settings(tmp_path / "portal.toml")
    assert settings.relay_token_file == tmp_path / "token"
    assert settings.policy.enabled_for("Bo@Sales.Acme.Example")
    assert not settings.policy.enabled_for("bo@acme.example")
    assert settings.policy.methods_to_register() == 2
    assert not TenantPolicy(sspr="off").enabled_for("anyone@acme.example")
    with pytest.raises(ValueError, match="repeats"):
        TenantPolicy(questions=["Pet?", "pet?"])


class PortalClient:
    """Sync facade over the in-process ASGI app that keeps cookies between calls."""

    def __init__(self, app: Any, base_url: str) -> None:
        self._transport = httpx.ASGITransport(app=app)
        self._base_url = base_url
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=self._transport, base_url=self._base_url,
                                         cookies=self.cookies) as c:
                response = await c.request(method, path, **kwargs)
                self.cookies = c.cookies
                return response

        return asyncio.run(call())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


class _Gateway:
    def __init__(self, answer: Status) -> None:
        self.answer = answer
        self.ops: list[str] = []

    def send(self, op: str, user: str, **_: Any) -> Status:
        self.ops.append(op)
        return self.answer

    def close(self) -> None:
        return None


def _client(
    tmp_path: Path, answer: Status, *, secure: bool = False
) -> tuple[PortalClient, Services]:
    settings = PortalSettings(
        tenant="t", relay_url="http://127.0.0.1:9", relay_token_file=tmp_path / "t",
        signing_key_file=tmp_path / "k", data_dir=tmp_path, secret_key_file=tmp_path / "s",
        secure_cookies=secure,
    )
    services = Services(settings, SqliteStore(tmp_path / "db"), _Gateway(answer),  # type: ignore[arg-type]
                        None, None, Limits(), None, structlog.get_logger())  # type: ignore[arg-type]
    return PortalClient(create_app(settings, services), base_url="https://127.0.0.1"), services


def _verified(client: PortalClient, services: Services) -> str:
    """A session whose reset flow finished verification (as the browser tests do for real)."""
    client.get("/")
    sid = client.cookies[COOKIE]
    data = services.store.session_get(sid, time.time()) or {}
    data.update(user="u@x", reset={"mode": "reset", "needed": 1, "done": ["email"],
                                   "pending": None, "verified_at": time.time(), "policy": {},
                                   "flow_id": "f"})
    services.store.session_put(sid, data, time.time() + 600)
    return str(data["csrf"])


@pytest.mark.parametrize(("answer", "heading"), [
    (Status.IN_DOUBT, "We could not confirm the change"),
    (Status.SUPERSEDED, "A newer request was used instead"),
    (Status.DIRECTORY_UNAVAILABLE, "We can&#39;t reach your organisation&#39;s directory"),
])
def test_answers_without_a_real_cause_have_their_pages(
    tmp_path: Path, answer: Status, heading: str
) -> None:
    client, services = _client(tmp_path, answer)
    csrf = _verified(client, services)
    page = client.post("/reset/password", data={"csrf": csrf, "new_password": "Aa1-aaaaaa",
                                                "confirm_password": "Aa1-aaaaaa"})
    assert heading in page.text
    assert services.gateway.ops == ["reset"]  # type: ignore[attr-defined]


def test_cookie_flags_and_csrf(tmp_path: Path) -> None:
    client, _services = _client(tmp_path, Status.SUCCEEDED, secure=True)
    page = client.get("/reset")
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    assert "default-src 'self'" in page.headers["content-security-policy"]
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    refused = client.post("/reset", data={"user": "u@x", "captcha": "x"})
    assert refused.status_code == 403
    forged = client.post("/reset", data={"csrf": "not-it", "user": "u@x", "captcha": "x"})
    assert forged.status_code == 403
    client.cookies = httpx.Cookies({COOKIE: "gone"})
    expired = client.post("/reset/password", data={"csrf": token.group(1)})
    assert expired.status_code == 410 and "Your session has expired" in expired.text


def test_reconfirm_after_the_period_then_looks_good(tmp_path: Path) -> None:
    client, services = _client(tmp_path, Status.SUCCEEDED)
    client.get("/")
    sid = client.cookies[COOKIE]
    data = services.store.session_get(sid, time.time()) or {}
    data.update(signed_in="u@x", user="u@x")
    services.store.session_put(sid, data, time.time() + 600)
    long_ago = time.time() - 181 * 86400  # the default period is 180 days
    services.store.method_put("u@x", "email", {"address": "u@home.example"}, long_ago)
    page = client.get("/register/methods")
    assert "It's been a while" in page.text
    done = client.post("/register/confirm", data={"csrf": data["csrf"]})
    assert "Thanks!" in done.text
    assert services.store.methods("u@x")["email"].confirmed_at > time.time() - 60
    assert "It's been a while" not in client.get("/register/methods").text
