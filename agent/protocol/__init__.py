"""The wire contract shared by the agent and the cloud side (docs/protocol.md).

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

from agent.protocol.canonical import b64url_decode, b64url_encode, canonical_json
from agent.protocol.errors import EncodingError, KeyFileError, ProtocolError, Rejected
from agent.protocol.keyring import PortalKeyring, TrustedPortalKey
from agent.protocol.keys import AgentKeys, AgentPublicKeys, KemPrivateKey, key_id
from agent.protocol.messages import (
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
from agent.protocol.results import (
    default_message,
    make_result,
    open_heartbeat,
    open_result,
    sign_heartbeat,
    sign_result,
)
from agent.protocol.sealing import hybrid_available
from agent.protocol.signing import Domain, sign, verify
from agent.protocol.status import (
    USER_MESSAGES,
    NotManagedReason,
    PolicyReason,
    RejectReason,
    Status,
)
from agent.protocol.verify import RequestVerifier, VerifiedRequest

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
