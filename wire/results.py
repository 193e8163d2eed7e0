"""Signed results and heartbeats (agent -> relay -> portal).

Why wire bytes are canonical: the agent sends exactly ``canonical_json(envelope)``,
so a receiver may hash or store the bytes as they are, and the test vectors pin them.
Receivers still re-canonicalise after parsing and never trust the sender's layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from wire.canonical import canonical_json, parse_json
from wire.errors import Rejected, validation_detail
from wire.keys import AgentKeys, AgentPublicKeys
from wire.messages import (
    HeartbeatBody,
    HeartbeatEnvelope,
    ResultBody,
    ResultEnvelope,
    Signature,
    check_version,
)
from wire.signing import Domain, sign, verify
from wire.status import (
    POLICY_MESSAGES,
    USER_MESSAGES,
    PolicyReason,
    RejectReason,
    Status,
)

MAX_RESULT_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 2000


def default_message(status: Status, reason: str | None) -> str:
    """The safe user-facing text for a status (the specific rule for policy failures)."""
    if status == Status.POLICY_VIOLATION and reason is not None and reason in set(PolicyReason):
        return POLICY_MESSAGES[PolicyReason(reason)]
    return USER_MESSAGES[status]


def make_result(
    *,
    request_id: str,
    request_hash: str | None,
    agent_id: str,
    tenant: str | None,
    status: Status,
    received_at: int,
    completed_at: int,
    reason: str | None = None,
    detail: str = "",
    dc: str | None = None,
    policy: dict[str, Any] | None = None,
    message: str | None = None,
) -> ResultBody:
    """Build a result body; ``message`` defaults to the status's safe user text.

    ``detail`` is cut to the wire limit rather than refused: losing the tail of an
    operator note is better than losing the result.
    """
    return ResultBody(
        v=1,
        type="result",
        request_id=request_id,
        request_hash=request_hash,
        agent_id=agent_id,
        tenant=tenant,
        status=status,
        reason=reason,
        message=message if message is not None else default_message(status, reason),
        detail=detail[:MAX_DETAIL_CHARS],
        dc=dc,
        policy=policy,
        received_at=received_at,
        completed_at=completed_at,
    )


def sign_result(body: ResultBody, keys: AgentKeys) -> bytes:
    """Wire bytes of the signed result."""
    payload = body.model_dump(mode="json")
    sig = sign(keys.signing, Domain.RESULT, payload)
    return canonical_json({"result": payload, "sig": sig.model_dump(mode="json")})


def sign_heartbeat(body: HeartbeatBody, keys: AgentKeys) -> bytes:
    payload = body.model_dump(mode="json")
    sig = sign(keys.signing, Domain.HEARTBEAT, payload)
    return canonical_json({"heartbeat": payload, "sig": sig.model_dump(mode="json")})


def open_result(
    raw: bytes, trusted_agents: Iterable[AgentPublicKeys], *, max_bytes: int = MAX_RESULT_BYTES
) -> tuple[ResultBody, AgentPublicKeys]:
    """Size cap, parse, known agent key, signature. Raises Rejected.

    Binding to a request (id, hash, tenant) is the caller's check: see cloud/sdk.py.
    """
    doc = _parse(raw, max_bytes)
    check_version(doc, "result")
    try:
        env = ResultEnvelope.model_validate(doc)
    except ValidationError as exc:
        raise Rejected(RejectReason.MALFORMED, _detail(exc)) from None
    agent = _signer(env.sig, trusted_agents)
    if not verify(
        agent.signing_public_key(), Domain.RESULT, env.result.model_dump(mode="json"), env.sig
    ):
        raise Rejected(
            RejectReason.BAD_SIGNATURE, f"result signature by {env.sig.kid} does not verify"
        )
    if agent.agent_id is not None and env.result.agent_id != agent.agent_id:
        raise Rejected(
            RejectReason.BAD_SIGNATURE,
            f"result claims agent {env.result.agent_id} but is signed by {agent.agent_id}",
        )
    return env.result, agent


def open_heartbeat(
    raw: bytes, trusted_agents: Iterable[AgentPublicKeys], *, max_bytes: int = MAX_RESULT_BYTES
) -> tuple[HeartbeatBody, AgentPublicKeys]:
    """The relay's check of a heartbeat. Raises Rejected."""
    doc = _parse(raw, max_bytes)
    check_version(doc, "heartbeat")
    try:
        env = HeartbeatEnvelope.model_validate(doc)
    except ValidationError as exc:
        raise Rejected(RejectReason.MALFORMED, _detail(exc)) from None
    agent = _signer(env.sig, trusted_agents)
    payload = env.heartbeat.model_dump(mode="json")
    if not verify(agent.signing_public_key(), Domain.HEARTBEAT, payload, env.sig):
        raise Rejected(
            RejectReason.BAD_SIGNATURE, f"heartbeat signature by {env.sig.kid} does not verify"
        )
    if agent.agent_id is not None and env.heartbeat.agent_id != agent.agent_id:
        raise Rejected(RejectReason.BAD_SIGNATURE, "heartbeat agent_id does not match its key")
    return env.heartbeat, agent


def _parse(raw: bytes, max_bytes: int) -> Any:
    if not isinstance(raw, bytes | bytearray):
        raise Rejected(RejectReason.MALFORMED, "message is not bytes")
    if len(raw) > max_bytes:
        raise Rejected(RejectReason.TOO_LARGE, f"message is {len(raw)} bytes, limit {max_bytes}")
    try:
        return parse_json(bytes(raw))
    except ValueError as exc:
        raise Rejected(RejectReason.MALFORMED, f"not strict UTF-8 JSON ({exc})") from None


def _signer(sig: Signature, trusted_agents: Iterable[AgentPublicKeys]) -> AgentPublicKeys:
    for agent in trusted_agents:
        if agent.sign_kid == sig.kid:
            return agent
    raise Rejected(RejectReason.UNKNOWN_KEY, f"agent key {sig.kid} is not trusted")


def _detail(exc: ValidationError) -> str:
    return validation_detail(exc)
