"""The signed-call format: how an agent authenticates one HTTP call to the relay.

The agent signs ``auth_message(...)`` with its enrolled Ed25519 key and sends it in
``Authorization: WBA1 agent=<id>, ts=<unix seconds>, sig=<b64url>``; the relay rebuilds
the same bytes and verifies. Both sides import this module, so the format has one home.
"""

from __future__ import annotations

import hashlib

from wire.canonical import b64url_encode

AUTH_SCHEME = "WBA1"
_AUTH_DOMAIN = b"writeback-relay-auth/v1\n"


def auth_message(method: str, path_with_query: bytes, ts: str, body: bytes) -> bytes:
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
            hashlib.sha256(body).hexdigest().encode("ascii"),
        )
    )


def authorization_value(agent_id: str, ts: str, sig: bytes) -> str:
    return f"{AUTH_SCHEME} agent={agent_id}, ts={ts}, sig={b64url_encode(sig)}"
