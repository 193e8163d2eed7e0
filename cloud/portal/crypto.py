"""The portal's secrets at rest: TOTP secrets encrypted (AES-256-GCM) with a key from
a secret file, one-time codes as HMACs, security answers as argon2 hashes.

Why a key file and not a derived key: the database and its backups then hold nothing
that unlocks an authenticator app without also stealing the key file (0600, or a
systemd credential), which lives elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import unicodedata
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def generate_key_file(path: Path) -> None:
    """32 random bytes, base64url, mode 0600 (created so, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())


class Secrets:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the portal secret key must be 32 bytes")
        self._aead = AESGCM(hashlib.sha256(b"writeback-portal totp\0" + key).digest())
        self._mac_key = hashlib.sha256(b"writeback-portal codes\0" + key).digest()
        self._hasher = PasswordHasher()

    @classmethod
    def from_file(cls, path: Path) -> Secrets:
        return cls(base64.urlsafe_b64decode(path.read_text(encoding="ascii").strip()))

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"

    # TOTP secrets ---------------------------------------------------------
    def seal(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return base64.urlsafe_b64encode(nonce + ct).decode()

    def open(self, sealed: str, context: str) -> str:
        raw = base64.urlsafe_b64decode(sealed)
        return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()

    # codes ------------------------------------------------------------------
    def code_mac(self, key: str, code: str) -> str:
        return hmac.new(self._mac_key, f"{key}\0{code}".encode(), hashlib.sha256).hexdigest()

    # security answers -------------------------------------------------------
    def hash_answer(self, answer: str) -> str:
        return self._hasher.hash(normalise_answer(answer))

    def check_answer(self, stored: str, answer: str) -> bool:
        try:
            return self._hasher.verify(stored, normalise_answer(answer))
        except (VerificationError, InvalidHashError):
            return False


def normalise_answer(answer: str) -> str:
    """Case, accents' composition, spacing and punctuation do not make an answer wrong."""
    text = unicodedata.normalize("NFKC", answer).casefold()
    kept = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(kept.split())


def new_code() -> str:
    """Six digits from the OS's CSPRNG."""
    return f"{secrets.randbelow(1_000_000):06d}"
