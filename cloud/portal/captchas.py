"""The "who are you" captcha: an image, and the same characters read aloud.

Letters and digits that don't look or sound alike; compared case-insensitively; one
answer per picture (a wrong answer draws a new one), so a bot can't keep guessing
at the same image.
"""

from __future__ import annotations

import secrets

from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha

ALPHABET = "ACDEFHJKLMNPRTUVWXY34679"
LENGTH = 5


def new_text() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def image(text: str) -> bytes:
    return ImageCaptcha(width=220, height=80).generate(text, format="png").getvalue()


def audio(text: str) -> bytes:
    return bytes(AudioCaptcha().generate(text))


def matches(expected: str | None, typed: str) -> bool:
    if not expected:
        return False
    return secrets.compare_digest(expected.upper(), "".join(typed.split()).upper())
