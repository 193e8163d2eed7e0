"""docs/test-vectors/relay.json (docs/protocol.md section 12) holds twice: recomputed
from the spec's formulas alone (hashlib, struct, Ed25519), and through the code the
agent and the relay run (agent.permits, wire.signed_call, cloud.relay.auth and the
relay's body models). A change to either side that the spec does not make fails here.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.permits import user_key, write_marker
from cloud.relay.auth import RelayHTTPError, parse_agent_authorization, verify_agent_request
from cloud.relay.models import PermitAsk, PermitBatchItem
from cloud.relay.store import AgentRecord
from wire.canonical import b64url_decode, b64url_encode
from wire.signed_call import auth_message, authorization_value

VECTORS = Path(__file__).resolve().parents[3] / "docs" / "test-vectors"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((VECTORS / name).read_text(encoding="utf-8")))


def _guid_string(raw: bytes) -> str:
    """Section 12.3: the first three groups little endian, the rest in order."""
    first, second, third = struct.unpack("<IHH", raw[:8])
    return f"{first:08x}-{second:04x}-{third:04x}-{raw[8:10].hex()}-{raw[10:].hex()}"


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_user_keys_from_the_spec_and_from_the_agent() -> None:
    cases = load("relay.json")["user_keys"]
    assert {c["name"][:2] for c in cases} >= {"ad", "op"}  # both directory kinds
    for case in cases:
        if "object_guid_hex" in case:
            read = _guid_string(bytes.fromhex(case["object_guid_hex"]))
        else:
            read = case["entry_uuid"].strip().lower()
        assert read == case["id"], case["name"]
        want = _sha256_hex(f"writeback-user-key/v1\n{case['tenant']}\n{case['id']}")
        assert case["user_key"] == want, case["name"]
        assert user_key(case["tenant"], case.get("entry_uuid", case["id"])) == want, case["name"]


def test_markers_from_the_spec_and_from_the_agent() -> None:
    for case in load("relay.json")["markers"]:
        got = write_marker(case["user_key"], case["server"], case["change_stamp"])
        assert got == case["marker"], case["name"]
        if not case["change_stamp"]:
            assert case["marker"] is None, case["name"]
            continue
        material = f"writeback-write-marker/v1\n{case['user_key']}\n{case['server']}\n"
        assert case["marker"] == _sha256_hex(material + case["change_stamp"]), case["name"]


def _spec_message(call: dict[str, Any]) -> bytes:
    body = call["body"].encode("utf-8")
    return b"\n".join(
        part.encode("ascii")
        for part in (
            "writeback-relay-auth/v2",
            call["method"],
            call["path_with_query"],
            call["ts"],
            call["nonce"],
            hashlib.sha256(body).hexdigest(),
        )
    )


def _agent_key() -> ed25519.Ed25519PrivateKey:
    seed = b64url_decode(load("result.json")["agent_signing_private_key"])
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


@pytest.mark.parametrize("which", ["permit", "empty_body"])
def test_the_signed_call_from_the_spec_the_agent_and_the_relay(which: str) -> None:
    doc = load("relay.json")["signed_call"]
    call = doc if which == "permit" else {**doc, **doc["empty_body_call"]}
    key = _agent_key()
    public = key.public_key()
    assert b64url_encode(public.public_bytes_raw()) == doc["agent_signing_public_key"]
    message = _spec_message(call)
    assert message.hex() == call["signed_bytes_hex"]
    body = call["body"].encode("utf-8")
    path = call["path_with_query"].encode("ascii")
    assert auth_message(call["method"], path, call["ts"], call["nonce"], body) == message
    assert b64url_encode(key.sign(message)) == call["signature"]  # Ed25519 is deterministic
    header = authorization_value(
        doc["agent_id"], call["ts"], call["nonce"], b64url_decode(call["signature"])
    )
    if which == "permit":
        assert header == doc["authorization"]
        assert hashlib.sha256(body).hexdigest() == doc["body_sha256_hex"]
        PermitAsk.model_validate_json(body)
    # The relay accepts it at its time, and refuses it with one byte changed.
    creds = parse_agent_authorization(header)
    agent = AgentRecord(
        doc["agent_id"], "acme", "hq", "n", {}, doc["agent_signing_public_key"], 0, 0, False
    )
    verify = dict(method=call["method"], now=float(call["ts"]), max_skew=300.0)
    assert verify_agent_request(creds, agent, path_with_query=path, body=body, **verify)
    with pytest.raises(RelayHTTPError) as refused:
        verify_agent_request(creds, agent, path_with_query=path + b"x", body=body, **verify)
    assert (refused.value.status, refused.value.code) == (401, "bad_signature")


def test_permit_bodies_per_op() -> None:
    # Section 12.3: reset and change are ordered, unlock is not, the others ask nothing.
    asks = load("relay.json")["permit_asks"]
    assert {op for op, ask in asks.items() if ask is not None} == {"reset", "change", "unlock"}
    for op, ask in asks.items():
        if ask is None:
            continue
        assert ask["ordered"] is (op in {"reset", "change"}), op
        PermitAsk.model_validate(ask)
        PermitBatchItem.model_validate({**ask, "lease_id": "lse_1"})
