"""Who is calling: portal (tenant bearer token), agent (Ed25519-signed request), admin.

Portal tokens and enrollment codes are random secrets shown once and stored only as
SHA-256 hashes (they have 256 / 80 bits of entropy, so a fast hash is enough).
Agents hold no bearer secret at all: each call is signed with the key they enrolled
(see `wire.signed_call.auth_message`, the one definition of the signed bytes).
Failures carry a stable `error` code in the JSON body so operators can tell a wrong
clock from a removed agent.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.relay.store import AgentRecord
from wire.canonical import b64url_decode
from wire.signed_call import AUTH_SCHEME, NONCE_PATTERN, auth_message

TOKEN_PREFIX = "wbr_"  # noqa: S105 - a public prefix, not a secret
_AUTH_RE = re.compile(
    rf"^{AUTH_SCHEME}\s+agent=(?P<agent>[A-Za-z0-9_.:-]{{1,128}}),\s*ts=(?P<ts>\d{{1,12}}),"
    rf"\s*nonce=(?P<nonce>{NONCE_PATTERN}),\s*sig=(?P<sig>[A-Za-z0-9_-]{{1,200}})$"
)


class RelayHTTPError(Exception):
    """An API error answered as JSON {"error": code, "message": ..., **extra}."""

    def __init__(
        self,
        http_status: int,
        code: str,
        message: str = "",
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{http_status} {code}")
        self.status = http_status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class ReplayedCall(Exception):
    """A signed agent call whose nonce was used before: answered 401 replayed by the
    app's handler (errors.py). Not a RelayHTTPError, so no route that answers those
    per item (a result batch) can take it for one item's refusal and go on."""

    def __init__(self) -> None:
        super().__init__("401 replayed")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_tenant_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_enrollment_code() -> str:
    """80 random bits as XXXX-XXXX-XXXX-XXXX (base32: no 0/1/8/9 to misread)."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def normalize_code(code: str) -> str:
    """Operators retype codes: ignore case, spaces and dashes."""
    return re.sub(r"[\s-]", "", code).upper()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_admin(authorization: str | None, admin_token: str | None) -> None:
    token = bearer_token(authorization)
    if admin_token is None:
        raise RelayHTTPError(403, "admin_api_disabled", "the relay runs without an admin token")
    if token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
        raise RelayHTTPError(401, "invalid_admin_token")


def validate_sign_key(sign_key: object) -> str:
    """The enrolled key must be a raw 32-byte Ed25519 public key in base64url."""
    if not isinstance(sign_key, str):
        raise RelayHTTPError(422, "invalid_public_keys", "public_keys.sign_key is required")
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(sign_key))
    except (ValueError, TypeError) as exc:
        raise RelayHTTPError(
            422, "invalid_public_keys", "sign_key is not a base64url Ed25519 public key"
        ) from exc
    return sign_key


@dataclass(frozen=True)
class AgentCredentials:
    agent_id: str
    ts: str  # as sent: the signature covers these exact digits
    nonce: str
    signature: bytes


@functools.lru_cache(maxsize=4096)
def _public_key(sign_key: str) -> Ed25519PublicKey:
    """The enrolled key, decoded once per key rather than on every call (bounded)."""
    return Ed25519PublicKey.from_public_bytes(b64url_decode(sign_key))


def parse_agent_authorization(authorization: str | None) -> AgentCredentials:
    if not authorization:
        raise RelayHTTPError(401, "missing_authorization", f"expected {AUTH_SCHEME} signature")
    match = _AUTH_RE.match(authorization.strip())
    if match is None:
        raise RelayHTTPError(
            401, "malformed_authorization", f"expected {AUTH_SCHEME} agent=, ts=, nonce=, sig="
        )
    try:
        signature = b64url_decode(match["sig"])
    except ValueError as exc:
        raise RelayHTTPError(401, "malformed_authorization", "sig is not base64url") from exc
    return AgentCredentials(match["agent"], match["ts"], match["nonce"], signature)


def verify_agent_request(
    creds: AgentCredentials,
    agent: AgentRecord | None,
    *,
    method: str,
    path_with_query: bytes,
    body: bytes,
    now: float,
    max_skew: float,
) -> AgentRecord:
    """Check clock window, agent state and signature; the order gives the most useful
    error code first (an operator fixes a clock before re-enrolling)."""
    if abs(now - int(creds.ts)) > max_skew:
        raise RelayHTTPError(
            401,
            "clock_skew",
            f"timestamp differs from relay time by more than {max_skew:.0f}s",
            server_time=now,
        )
    if agent is None:
        raise RelayHTTPError(401, "unknown_agent", "no such agent; enroll it")
    if agent.removed:
        raise RelayHTTPError(401, "agent_removed", "this agent was removed; enroll it again")
    message = auth_message(method, path_with_query, creds.ts, creds.nonce, body)
    try:
        _public_key(agent.sign_key).verify(creds.signature, message)
    except InvalidSignature as exc:
        raise RelayHTTPError(401, "bad_signature", "signature does not verify") from exc
    return agent
