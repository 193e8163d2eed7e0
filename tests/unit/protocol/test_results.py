"""Signed results and heartbeats, verified through the SDK and the relay helper."""

from __future__ import annotations

import json

import pytest

from cloud.sdk import ResultRejected, SDKError, build_request, verify_result
from wire import (
    AgentKeys,
    HeartbeatBody,
    PolicyReason,
    Rejected,
    RejectReason,
    Status,
    make_result,
    open_heartbeat,
    sign_heartbeat,
    sign_result,
)
from wire.canonical import canonical_json

from .conftest import NEW_PW, NOW, World


def _result(world: World, agent: AgentKeys, agent_id: str, **kw: object) -> bytes:
    req = kw.pop("request")
    fields: dict[str, object] = {
        "request_id": req.id,  # type: ignore[attr-defined]
        "request_hash": req.request_hash,  # type: ignore[attr-defined]
        "agent_id": agent_id,
        "tenant": "acme",
        "status": Status.SUCCEEDED,
        "received_at": NOW,
        "completed_at": NOW + 1,
        "dc": "dc1.acme.example",
    }
    fields.update(kw)
    return sign_result(make_result(**fields), agent)  # type: ignore[arg-type]


def test_valid_result_verifies(x_world: World) -> None:
    a = x_world.agents[0]
    req = x_world.request()
    raw = _result(x_world, a, "agent-0", request=req)
    result = verify_result(raw, request=req, trusted_agents=[a.public("agent-0")])
    assert result.status is Status.SUCCEEDED
    assert result.message == "Your password has been updated."
    assert NEW_PW.encode() not in raw


def test_policy_violation_message_names_the_rule(x_world: World) -> None:
    a = x_world.agents[0]
    req = x_world.request()
    raw = _result(
        x_world,
        a,
        "agent-0",
        request=req,
        status=Status.POLICY_VIOLATION,
        reason=PolicyReason.TOO_SHORT.value,
        policy={"min_length": 12, "complexity": True},
    )
    result = verify_result(raw, request=req, trusted_agents=[a.public("agent-0")])
    assert result.reason == "too_short"
    assert "too short" in result.message
    assert result.policy == {"min_length": 12, "complexity": True}


def test_result_signed_by_another_agent_fails(x_world: World) -> None:
    a, b = x_world.agents
    req = x_world.request()
    # b is not in the trusted list: unknown key.
    raw = _result(x_world, b, "agent-0", request=req)
    with pytest.raises(ResultRejected) as info:
        verify_result(raw, request=req, trusted_agents=[a.public("agent-0")])
    assert info.value.reason == "unknown_key"
    # b claims a's kid: the signature does not verify.
    doc = json.loads(raw)
    doc["sig"]["kid"] = a.sign_kid
    with pytest.raises(ResultRejected) as info:
        verify_result(canonical_json(doc), request=req, trusted_agents=[a.public("agent-0")])
    assert info.value.reason == "bad_signature"
    # b is trusted (enrolled as agent-1) but claims to be agent-0.
    with pytest.raises(ResultRejected) as info:
        verify_result(raw, request=req, trusted_agents=[a.public("agent-0"), b.public("agent-1")])
    assert info.value.reason == "bad_signature"


def test_result_for_another_request_fails(x_world: World) -> None:
    a = x_world.agents[0]
    req, other = x_world.request(), x_world.request()
    raw = _result(x_world, a, "agent-0", request=other)
    with pytest.raises(ResultRejected) as info:
        verify_result(raw, request=req, trusted_agents=[a.public("agent-0")])
    assert info.value.reason == "wrong_request"
    # Same id, other hash (e.g. the agent saw an altered request).
    raw = _result(x_world, a, "agent-0", request=req, request_hash=other.request_hash)
    with pytest.raises(ResultRejected, match="request_hash"):
        verify_result(raw, request=req, trusted_agents=[a.public("agent-0")])


def test_tampered_result_fails(x_world: World) -> None:
    a = x_world.agents[0]
    req = x_world.request()
    raw = _result(
        x_world, a, "agent-0", request=req, status=Status.POLICY_VIOLATION, reason="history"
    )
    tampered = raw.replace(b'"policy_violation"', b'"succeeded"')
    with pytest.raises(ResultRejected) as info:
        verify_result(tampered, request=req, trusted_agents=[a.public("agent-0")])
    assert info.value.reason == "bad_signature"
    for bad in (b"{", b"x" * (65 * 1024), b'{"result": 1, "sig": 2}'):
        with pytest.raises(ResultRejected):
            verify_result(bad, request=req, trusted_agents=[a.public("agent-0")])


def test_rejection_result_without_hash(x_world: World) -> None:
    a = x_world.agents[0]
    req = x_world.request()
    raw = _result(
        x_world,
        a,
        "agent-0",
        request=req,
        request_hash=None,
        status=Status.REJECTED,
        reason=RejectReason.MALFORMED.value,
    )
    assert (
        verify_result(raw, request=req, trusted_agents=[a.public("agent-0")]).status
        is Status.REJECTED
    )
    with pytest.raises(ValueError, match="request_hash"):
        _result(x_world, a, "agent-0", request=req, request_hash=None)


def test_result_refuses_floats_in_policy(x_world: World) -> None:
    with pytest.raises(ValueError, match="canonical"):
        _result(x_world, x_world.agents[0], "agent-0", request=x_world.request(), policy={"x": 1.5})


def test_heartbeat_roundtrip_and_domain_separation(x_world: World) -> None:
    a = x_world.agents[0]
    body = HeartbeatBody(
        v=1,
        type="heartbeat",
        agent_id="agent-0",
        version="0.1.0",
        sent_at=NOW,
        directories={"corp": {"status": "ok", "dc": "dc1", "latency_ms": 4}},
        in_flight=0,
    )
    raw = sign_heartbeat(body, a)
    got, agent = open_heartbeat(raw, [a.public("agent-0")])
    assert got == body and agent.agent_id == "agent-0"
    # A heartbeat signature cannot be passed off as a result signature and vice versa.
    doc = json.loads(raw)
    req = x_world.request()
    res = json.loads(_result(x_world, a, "agent-0", request=req))
    res["sig"] = doc["sig"]
    with pytest.raises(ResultRejected, match="bad_signature"):
        verify_result(canonical_json(res), request=req, trusted_agents=[a.public("agent-0")])
    with pytest.raises(Rejected):
        open_heartbeat(raw, [x_world.agents[1].public("agent-1")])


def test_sdk_misuse_is_a_clear_error(x_world: World) -> None:
    agents = [a.public() for a in x_world.agents]
    with pytest.raises(SDKError, match=r"new_password|fit op"):
        build_request(
            x_world.signer,
            tenant="acme",
            agent_group="hq",
            agents=agents,
            op="reset",
            user_kind="upn",
            user_value="a@b",
        )
    with pytest.raises(SDKError, match="no enrolled agent"):
        build_request(
            x_world.signer,
            tenant="acme",
            agent_group="hq",
            agents=[],
            op="reset",
            user_kind="upn",
            user_value="a@b",
            new_password="x",
        )
    with pytest.raises(SDKError) as info:
        build_request(
            x_world.signer,
            tenant="acme",
            agent_group="hq",
            agents=agents,
            op="reset",
            user_kind="upn",
            user_value="a@b",
            new_password="p" * 600,
        )
    assert "ppppp" not in str(info.value)
    mixed = [*agents, AgentKeys.generate("mlkem768-x25519").public()]
    with pytest.raises(SDKError, match="different KEMs"):
        build_request(
            x_world.signer,
            tenant="acme",
            agent_group="hq",
            agents=mixed,
            op="reset",
            user_kind="upn",
            user_value="a@b",
            new_password="x",
        )
