"""Ed25519 signatures with domain separation.

Why domains: the same agent key signs results, heartbeats and relay auth challenges;
a prefix per purpose makes a signature valid for exactly one kind of message, so a
signed heartbeat can never be replayed as a result. Signature input is
``domain + canonical_json(payload)``; every domain ends with a NUL byte so no domain
is a prefix of another's input (docs/protocol.md section 5).
"""

from __future__ import annotations

import functools
from enum import Enum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from wire.canonical import b64url_decode, b64url_encode, canonical_json
from wire.keys import key_id
from wire.messages import Signature


class Domain(bytes, Enum):
    """Signature domains. Add new ones; never reuse or change one."""

    REQUEST = b"writeback-agent/request/v1\x00"
    RESULT = b"writeback-agent/result/v1\x00"
    HEARTBEAT = b"writeback-agent/heartbeat/v1\x00"
    # Relay call authentication signs with its own prefix, b"writeback-relay-auth/v1\n"
    # (agent/transports/relay.py), which no domain here starts with.


def signature_input(domain: Domain, payload: Any) -> bytes:
    return domain.value + canonical_json(payload)


def sign(private_key: ed25519.Ed25519PrivateKey, domain: Domain, payload: Any) -> Signature:
    """Sign ``payload`` (a JSON value) under ``domain``; kid derived from the key."""
    value = private_key.sign(signature_input(domain, payload))
    return Signature(kid=_kid(private_key), alg="ed25519", value=b64url_encode(value))


@functools.lru_cache(maxsize=8)  # by key object: an agent signs with one key at a time
def _kid(private_key: ed25519.Ed25519PrivateKey) -> str:
    return key_id("ed25519", private_key.public_key().public_bytes_raw())


def verify(
    public_key: ed25519.Ed25519PublicKey, domain: Domain, payload: Any, signature: Signature
) -> bool:
    """True when ``signature`` is a valid signature of ``payload`` under ``domain``.

    Returns a bool rather than raising so callers map it to their own error (agent:
    Rejected(BAD_SIGNATURE); SDK: ResultRejected).
    """
    try:
        public_key.verify(b64url_decode(signature.value), signature_input(domain, payload))
    except (InvalidSignature, ValueError):
        return False
    return True
