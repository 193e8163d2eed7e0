"""Verification methods: what is registered, how it is shown (masked), and how a
one-time code is sent and checked. Used by registration (prove a new address or
number) and by reset (prove who you are).

Codes: 6 digits, single use, valid 10 minutes, 5 tries; stored as an HMAC.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers
import pyotp

from cloud.portal.crypto import Secrets, new_code
from cloud.portal.delivery import Mailer, PhoneProvider
from cloud.portal.store import CodeCheck, Method, Store

CODE_TTL = 600
CODE_TRIES = 5

LABELS = {
    "email": "Email my alternate address",
    "mobile_phone": "Text or call my mobile phone",
    "office_phone": "Call my office phone",
    "app": "Enter a code from my authenticator app",
    "questions": "Answer my security questions",
}

# Country calling codes offered in the phone form (region code, label).
COUNTRIES = [
    ("US", "United States (+1)"), ("CA", "Canada (+1)"), ("GB", "United Kingdom (+44)"),
    ("IE", "Ireland (+353)"), ("FR", "France (+33)"), ("DE", "Germany (+49)"),
    ("NL", "Netherlands (+31)"), ("BE", "Belgium (+32)"), ("ES", "Spain (+34)"),
    ("IT", "Italy (+39)"), ("PT", "Portugal (+351)"), ("CH", "Switzerland (+41)"),
    ("AT", "Austria (+43)"), ("SE", "Sweden (+46)"), ("NO", "Norway (+47)"),
    ("DK", "Denmark (+45)"), ("FI", "Finland (+358)"), ("PL", "Poland (+48)"),
    ("AU", "Australia (+61)"), ("NZ", "New Zealand (+64)"), ("IN", "India (+91)"),
    ("JP", "Japan (+81)"), ("SG", "Singapore (+65)"), ("ZA", "South Africa (+27)"),
    ("BR", "Brazil (+55)"), ("MX", "Mexico (+52)"),
]


class BadNumber(ValueError):
    """Not a valid phone number for the chosen country."""


def parse_phone(region: str, number: str) -> str:
    """E.164 form of a number typed for a region (phonenumbers validates it)."""
    try:
        parsed = phonenumbers.parse(number, region.upper() or None)
    except phonenumbers.NumberParseException:
        raise BadNumber("That is not a phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise BadNumber("That number is not valid for the country you chose.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:2]}{'*' * 5}@{domain}"


def mask_phone(e164: str) -> str:
    return "*" * max(len(e164) - 3, 4) + e164[-2:]


def masked(method: Method) -> str:
    if method.kind == "email":
        return mask_email(str(method.data["address"]))
    if method.kind in ("mobile_phone", "office_phone"):
        return mask_phone(str(method.data["number"]))
    return ""


@dataclass(frozen=True)
class Verifier:
    store: Store
    secrets: Secrets
    mailer: Mailer
    phones: PhoneProvider
    organisation: str

    # codes -------------------------------------------------------------------
    def _issue(self, key: str) -> str:
        code = new_code()
        self.store.code_put(key, self.secrets.code_mac(key, code), time.time() + CODE_TTL,
                            CODE_TRIES)
        return code

    def check_code(self, key: str, typed: str) -> CodeCheck:
        typed = "".join(typed.split())
        return self.store.code_check(key, self.secrets.code_mac(key, typed), time.time())

    def email_code(self, key: str, address: str) -> None:
        code = self._issue(key)
        self.mailer.send(
            address,
            f"{self.organisation} account verification code",
            f"Your verification code is {code}.\n\n"
            "It is valid for 10 minutes. If you did not ask for it, you can ignore this "
            "message: nothing changes unless the code is entered.\n",
        )

    def text_code(self, key: str, number: str) -> None:
        code = self._issue(key)
        self.phones.send_text(
            number, f"{code} is your {self.organisation} verification code. Valid 10 minutes."
        )

    def call(self, number: str, callback_url: str) -> None:
        self.phones.call(
            number,
            f"This is {self.organisation}. Someone asked to verify your account. "
            "If this was you, press the pound key. Otherwise, hang up.",
            callback_url,
        )

    # authenticator app -------------------------------------------------------
    def totp_ok(self, sealed_secret: str, user_key: str, typed: str) -> bool:
        secret = self.secrets.open(sealed_secret, user_key)
        return pyotp.TOTP(secret).verify("".join(typed.split()), valid_window=1)

    # security questions ------------------------------------------------------
    def answers_ok(self, method: Method, answers: dict[str, str]) -> bool:
        stored = {item["q"]: item["h"] for item in method.data["items"]}
        results = [self.secrets.check_answer(stored.get(q, ""), a) for q, a in answers.items()]
        return bool(results) and all(results)


def usable_methods(registered: dict[str, Method], allowed: Sequence[str],
                   office: str | None) -> dict[str, Method]:
    """Registered methods the policy allows (the office phone comes from the policy)."""
    found = dict(registered)
    if office:
        found["office_phone"] = Method("office_phone", {"number": office}, 0.0)
    return {k: found[k] for k in allowed if k in found}  # in the policy's order
