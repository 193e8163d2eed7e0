"""The signed-call format: how an agent authenticates one HTTP call to the relay.

The agent signs ``auth_message(...)`` with its enrolled Ed25519 key and sends it in
``Authorization: WBA1 agent=<id>, ts=<unix seconds>, nonce=<random>, sig=<b64url>``;
the relay rebuilds the same bytes and verifies. Both sides import this module, so the
format has one home.

Each signed call is usable once: the relay accepts a signature only within its clock
window (ts) and records (agent, nonce) in its store, refusing the same nonce again,
so a captured lease or heartbeat call cannot be replayed (on any relay replica).
"""

from __future__ import annotations

import hashlib
import secrets

from wire.canonical import b64url_encode

AUTH_SCHEME = "WBA1"
_AUTH_DOMAIN = b"writeback-relay-auth/v2\n"
NONCE_PATTERN = r"[A-Za-z0-9_-]{16,64}"


def new_nonce() -> str:
    """128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def auth_message(method: str, path_with_query: bytes, ts: str, nonce: str, body: bytes) -> bytes:
    """The bytes an agent signs for one relay call."""
    return b"".join(
        (
            _AUTH_DOMAIN,
            method.upper().encode("ascii"),
            b"\n",
            path_with_query,
            b"\n",
            ts.encode("ascii"),
            b"\n",
            nonce.encode("ascii"),
            b"\n",
            hashlib.sha256(body).hexdigest().encode("ascii"),
        )
    )


def authorization_value(agent_id: str, ts: str, nonce: str, sig: bytes) -> str:
    return f"{AUTH_SCHEME} agent={agent_id}, ts={ts}, nonce={nonce}, sig={b64url_encode(sig)}"
