"""The agent's keyring of trusted portal signing keys, with rotation windows.

Why windows rather than a single pinned key: a portal rotates by publishing the new
key (not_before = now) while the old one stays valid until its not_after; during the
overlap the agent accepts both, so no request in flight is lost. A key past its
not_after is *retired* (RejectReason.RETIRED_KEY), distinct from a key never seen.
The file form is ``{"v": 1, "keys": [TrustedPortalKey, ...]}`` (docs/protocol.md 7.3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wire.canonical import b64url_decode
from wire.errors import KeyFileError, Rejected
from wire.files import write_private
from wire.keys import ed25519_public_key, key_id
from wire.messages import SIGN_KID_PATTERN, UnixTime
from wire.status import RejectReason


class TrustedPortalKey(BaseModel):
    """One portal Ed25519 public key and the window in which it may sign requests."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kid: Annotated[str, Field(pattern=SIGN_KID_PATTERN)]
    alg: str = "ed25519"
    key: Annotated[str, Field(min_length=43, max_length=43)]
    not_before: UnixTime | None = None
    not_after: UnixTime | None = None

    @model_validator(mode="after")
    def _kid_matches_key(self) -> TrustedPortalKey:
        if self.alg != "ed25519":
            raise ValueError("only ed25519 portal keys are supported")
        raw = b64url_decode(self.key)
        ed25519_public_key(raw)  # canonical encoding, not of small order
        if key_id("ed25519", raw) != self.kid:
            raise ValueError("kid does not match key")
        return self

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return ed25519_public_key(b64url_decode(self.key))


class PortalKeyring:
    """Trusted portal keys by kid. Immutable-ish: ``with_key`` returns a new keyring."""

    def __init__(self, keys: list[TrustedPortalKey] | None = None) -> None:
        self._keys: dict[str, TrustedPortalKey] = {k.kid: k for k in keys or []}

    @property
    def keys(self) -> list[TrustedPortalKey]:
        return list(self._keys.values())

    def with_key(self, key: TrustedPortalKey) -> PortalKeyring:
        """Add or replace (same kid, e.g. a new not_after) one key."""
        return PortalKeyring([*(k for k in self.keys if k.kid != key.kid), key])

    def lookup(self, kid: str, now: int) -> ed25519.Ed25519PublicKey:
        """The public key for ``kid`` if it is trusted at ``now``; else Rejected."""
        entry = self._keys.get(kid)
        if entry is None:
            raise Rejected(RejectReason.UNKNOWN_KEY, f"portal key {kid} is not in the keyring")
        if entry.not_before is not None and now < entry.not_before:
            raise Rejected(
                RejectReason.UNKNOWN_KEY,
                f"portal key {kid} is not valid before {entry.not_before} (now {now})",
            )
        if entry.not_after is not None and now > entry.not_after:
            raise Rejected(
                RejectReason.RETIRED_KEY,
                f"portal key {kid} was retired at {entry.not_after} (now {now})",
            )
        return entry.public_key()

    def to_json(self) -> str:
        return json.dumps(
            {"v": 1, "keys": [k.model_dump(mode="json") for k in self.keys]}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> PortalKeyring:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("v") != 1:
                raise ValueError("not a v1 keyring")
            return cls([TrustedPortalKey.model_validate(k) for k in doc["keys"]])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise KeyFileError(f"invalid portal keyring ({type(exc).__name__})") from None

    def save(self, path: Path) -> None:
        """Public keys only, but write 0600 anyway: the trust anchor must not be edited."""
        write_private(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> PortalKeyring:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyFileError(f"{path}: unreadable keyring ({type(exc).__name__})") from None

    def __repr__(self) -> str:
        return f"PortalKeyring(kids={sorted(self._keys)!r})"
