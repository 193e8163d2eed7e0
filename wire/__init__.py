"""The wire contract shared by the agent and the cloud side (docs/protocol.md).

A leaf package, like h11 under httpcore: pure, no I/O, and it imports nothing from
``agent``, ``connectors`` or ``cloud``. The import directions are::

    wire  <-  connectors  <-  agent
    wire  <-  cloud (sdk, relay, portal)

(checked by tests/unit/test_import_layers.py). Importing ``wire.status`` loads no
cryptography: the names below are resolved lazily, on first use. Beside the contract,
the one thing both sides must do alike without importing each other lives here too:
the redacting log handler (``wire.redaction``, ``wire.log_setup``) and the keep-alive
HTTP connections both clients of the relay use (``wire.http_connection``: the one
module here that does I/O, standard library only).

Agent pipeline::

    verifier = RequestVerifier(keyring, agent_keys, tenant=..., agent_group=...)
    try:
        verified = verifier.verify(raw)      # size, parse, key id, signature, recipient, time
        ...journal dedupe on verified.id...
        secret = verified.open()             # decryption last
    except Rejected as exc:                  # exc.reason, exc.detail: safe to log
        ...
    body = make_result(request_id=..., request_hash=verified.request_hash, ...)
    wire = sign_result(body, agent_keys)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names for type checkers; at run time __getattr__ imports lazily
    from wire.canonical import b64url_decode, b64url_encode, canonical_json
    from wire.errors import EncodingError, KeyFileError, ProtocolError, Rejected
    from wire.keyring import PortalKeyring, TrustedPortalKey
    from wire.keys import AgentKeys, AgentPublicKeys, KemPrivateKey, key_id
    from wire.messages import (
        HeartbeatBody,
        HeartbeatEnvelope,
        KemAlg,
        Op,
        Options,
        RequestEnvelope,
        RequestHeader,
        ResultBody,
        ResultEnvelope,
        SecretPart,
        Signature,
        UserKind,
        UserRef,
    )
    from wire.results import (
        default_message,
        make_result,
        open_heartbeat,
        open_result,
        sign_heartbeat,
        sign_result,
    )
    from wire.sealing import hybrid_available
    from wire.signing import Domain, sign, verify
    from wire.status import USER_MESSAGES, NotManagedReason, PolicyReason, RejectReason, Status
    from wire.verify import RequestVerifier, VerifiedRequest

_WHERE: dict[str, str] = {
    "AgentKeys": "keys",
    "AgentPublicKeys": "keys",
    "Domain": "signing",
    "EncodingError": "errors",
    "HeartbeatBody": "messages",
    "HeartbeatEnvelope": "messages",
    "KemAlg": "messages",
    "KemPrivateKey": "keys",
    "KeyFileError": "errors",
    "NotManagedReason": "status",
    "Op": "messages",
    "Options": "messages",
    "PolicyReason": "status",
    "PortalKeyring": "keyring",
    "ProtocolError": "errors",
    "RejectReason": "status",
    "Rejected": "errors",
    "RequestEnvelope": "messages",
    "RequestHeader": "messages",
    "RequestVerifier": "verify",
    "ResultBody": "messages",
    "ResultEnvelope": "messages",
    "SecretPart": "messages",
    "Signature": "messages",
    "Status": "status",
    "TrustedPortalKey": "keyring",
    "USER_MESSAGES": "status",
    "UserKind": "messages",
    "UserRef": "messages",
    "VerifiedRequest": "verify",
    "b64url_decode": "canonical",
    "b64url_encode": "canonical",
    "canonical_json": "canonical",
    "default_message": "results",
    "hybrid_available": "sealing",
    "key_id": "keys",
    "make_result": "results",
    "open_heartbeat": "results",
    "open_result": "results",
    "sign": "signing",
    "sign_heartbeat": "results",
    "sign_result": "results",
    "verify": "signing",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'wire' has no attribute {name!r}")
    return getattr(importlib.import_module(f"wire.{module}"), name)


__all__ = [
    "USER_MESSAGES",
    "AgentKeys",
    "AgentPublicKeys",
    "Domain",
    "EncodingError",
    "HeartbeatBody",
    "HeartbeatEnvelope",
    "KemAlg",
    "KemPrivateKey",
    "KeyFileError",
    "NotManagedReason",
    "Op",
    "Options",
    "PolicyReason",
    "PortalKeyring",
    "ProtocolError",
    "RejectReason",
    "Rejected",
    "RequestEnvelope",
    "RequestHeader",
    "RequestVerifier",
    "ResultBody",
    "ResultEnvelope",
    "SecretPart",
    "Signature",
    "Status",
    "TrustedPortalKey",
    "UserKind",
    "UserRef",
    "VerifiedRequest",
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "default_message",
    "hybrid_available",
    "key_id",
    "make_result",
    "open_heartbeat",
    "open_result",
    "sign",
    "sign_heartbeat",
    "sign_result",
    "verify",
]
