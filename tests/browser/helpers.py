"""Users and registrations for the browser tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyotp

from cloud.portal.app import Services
from tests.browser.conftest import UPN
from tests.servers.base import DirectoryEnv, unique_login

INITIAL = "Initial-Pass-1"
ANSWERS = {
    "In what city were you born?": "Gothenburg",
    "What was the name of your first pet?": "Sir Whiskers",
    "What was the make of your first car?": "Volvo",
}


@dataclass
class User:
    login: str
    upn: str
    email: str
    totp_secret: str | None = None

    def totp(self) -> str:
        assert self.totp_secret
        return pyotp.TOTP(self.totp_secret).now()


def make_user(env: DirectoryEnv, prefix: str = "p", **kwargs: object) -> User:
    login = unique_login(prefix)
    env.create_user(login, INITIAL, given_name="Maja", surname="Lindgren", **kwargs)  # type: ignore[arg-type]
    return User(login, f"{login}@{UPN}", f"{login}@home.example")


def register(services: Services, user: User, *, email: bool = True, app: bool = False,
             questions: bool = False, phone: str | None = None, at: float | None = None) -> User:
    """What a completed registration stores (the register test does it in the browser);
    `at`: when the methods were confirmed (now by default)."""
    now = time.time() if at is None else at
    store, secrets = services.store, services.verifier.secrets
    if email:
        store.method_put(user.upn, "email", {"address": user.email}, now)
    if app:
        user.totp_secret = pyotp.random_base32()
        store.method_put(user.upn, "app", {"secret": secrets.seal(user.totp_secret, user.upn)}, now)
    if questions:
        items = [{"q": q, "h": secrets.hash_answer(a)} for q, a in ANSWERS.items()]
        store.method_put(user.upn, "questions", {"items": items}, now)
    if phone:
        store.method_put(user.upn, "mobile_phone", {"number": phone}, now)
    return user
