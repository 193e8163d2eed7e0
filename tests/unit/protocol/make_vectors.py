"""Regenerate docs/test-vectors/*.json:  .venv/bin/python -m tests.unit.protocol.make_vectors

Keys, ids, headers, canonical bytes and Ed25519 signatures are deterministic. HPKE
encryption is randomised (a fresh ephemeral key each time), so the sealed entries
change on every run; test_vectors.py therefore checks the stored ones by opening
them, and checks everything else byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from wire import AgentKeys, KemPrivateKey, Status, make_result, sign_result
from wire.canonical import b64url_encode, canonical_json, sha256
from wire.messages import KemAlg
from wire.sealing import seal_info
from wire.signing import Domain, signature_input
from cloud.sdk import PortalSigner, SignedRequest, build_request

OUT = Path(__file__).resolve().parents[3] / "docs" / "test-vectors"

NOW = 1_800_000_000
REQUEST_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
TENANT, GROUP = "acme", "hq"
PORTAL_SEED = bytes(range(32))
AGENT_SIGN_SEED = bytes(range(96, 128))
KEM_SEEDS: dict[str, bytes] = {
    "x25519": bytes(range(32, 64)),
    "mlkem768-x25519": bytes(range(64)) + bytes(range(64, 96)),
}
OTHER_KEM_SEED = bytes(range(128, 160))
VERIFIER = {
    "tenant": TENANT,
    "agent_group": GROUP,
    "now": NOW + 5,
    "max_skew": 60,
    "max_lifetime": 900,
    "max_bytes": 65536,
}


def agent_keys(kem: KemAlg, seed: bytes | None = None) -> AgentKeys:
    return AgentKeys(
        ed25519.Ed25519PrivateKey.from_private_bytes(AGENT_SIGN_SEED),
        KemPrivateKey.from_private_raw(kem, seed or KEM_SEEDS[kem]),
    )


def portal() -> PortalSigner:
    return PortalSigner.from_private_bytes(PORTAL_SEED)


def hexs(data: bytes) -> str:
    return data.hex()


def request(kem: KemAlg, **kw: Any) -> SignedRequest:
    args: dict[str, Any] = {
        "tenant": TENANT,
        "agent_group": GROUP,
        "agents": [agent_keys(kem).public("agent-1")],
        "op": "change",
        "user_kind": "upn",
        "user_value": "jürgen@acme.example",
        "new_password": "Ünïcode-N3w!",
        "old_password": '0ld-Pa55"\\',
        "now": NOW,
        "request_id": REQUEST_ID,
        "unlock": True,
    }
    args.update(kw)
    return build_request(kw.pop("signer", portal()), **args)


def request_vector(kem: KemAlg) -> dict[str, Any]:
    req = request(kem)
    keys = agent_keys(kem)
    header = req.header
    signed = {"header": header.model_dump(mode="json"), "sealed": req.envelope.sealed}
    sig_input = signature_input(Domain.REQUEST, signed)
    plaintext = canonical_json({"new_password": "Ünïcode-N3w!", "old_password": '0ld-Pa55"\\'})
    return {
        "description": f"A change request sealed with {kem}; see docs/protocol.md.",
        "portal_private_key": b64url_encode(PORTAL_SEED),
        "portal_kid": portal().kid,
        "agent_kem": kem,
        "agent_kem_private_key": b64url_encode(keys.kem.private_raw()),
        "agent_kem_public_key": b64url_encode(keys.kem.public_raw()),
        "agent_kem_kid": keys.kem.kid,
        "verifier": VERIFIER,
        "header": header.model_dump(mode="json"),
        "canonical_header_hex": hexs(header.canonical()),
        "header_hash_hex": hexs(sha256(header.canonical())),
        "seal_info_hex": hexs(seal_info(header)),
        "plaintext_hex": hexs(plaintext),
        "sealed": req.envelope.sealed,
        "signature_input_hex": hexs(sig_input),
        "signature": req.envelope.sig.value,
        "wire": req.to_bytes().decode("utf-8"),
        "request_hash": req.request_hash,
    }


def _resign(doc: dict[str, Any], signer: PortalSigner | None = None) -> str:
    s = signer or portal()
    payload = {"header": doc["header"], "sealed": doc["sealed"]}
    doc["sig"] = {
        "kid": s.kid,
        "alg": "ed25519",
        "value": b64url_encode(s._key.sign(signature_input(Domain.REQUEST, payload))),
    }
    return canonical_json(doc).decode("utf-8")


def _flip1(b64: str) -> str:
    """Change the first base64url character (all six of its bits are data)."""
    return ("B" if b64[0] == "A" else "A") + b64[1:]


def rejection_vectors() -> dict[str, Any]:
    kem: KemAlg = "x25519"
    good = json.loads(request(kem).to_bytes())
    cases: list[dict[str, Any]] = []

    def case(name: str, wire: str, reason: str, **verifier: Any) -> None:
        cases.append({"name": name, "wire": wire, "reason": reason, "verifier": verifier})

    def mutated(fn: Any, resign: bool = False) -> str:
        doc = json.loads(json.dumps(good))
        fn(doc)
        return _resign(doc) if resign else canonical_json(doc).decode("utf-8")

    kid = next(iter(good["sealed"]))
    case("too_large", json.dumps(good), "too_large", max_bytes=256)
    case("not_json", '{"header":', "malformed")
    case("duplicate_key", '{"a":1,"a":1}', "malformed")
    case("missing_field", mutated(lambda d: d["header"].pop("exp"), resign=True), "malformed")
    case("extra_field", mutated(lambda d: d["header"].update(x=1), resign=True), "malformed")
    case(
        "wrong_type", mutated(lambda d: d["header"].update(iat=str(NOW)), resign=True), "malformed"
    )
    case("unsupported_version", mutated(lambda d: d["header"].update(v=2)), "unsupported_version")
    case(
        "unknown_key",
        _resign(json.loads(json.dumps(good)), PortalSigner.from_private_bytes(bytes(32))),
        "unknown_key",
    )
    case("retired_key", json.dumps(good), "retired_key", portal_not_after=NOW)
    case(
        "header_changed",
        mutated(lambda d: d["header"]["user"].update(value="x@acme.example")),
        "bad_signature",
    )
    case(
        "sealed_changed",
        mutated(lambda d: d["sealed"].update({kid: _flip1(d["sealed"][kid])})),
        "bad_signature",
    )
    case(
        "signature_changed",
        mutated(lambda d: d["sig"].update(value=_flip1(d["sig"]["value"]))),
        "bad_signature",
    )
    case("wrong_tenant", json.dumps(good), "wrong_tenant", tenant="other")
    case("wrong_agent_group", json.dumps(good), "wrong_agent_group", agent_group="branch")
    case("expired", json.dumps(good), "expired", now=NOW + 120 + 61)
    case("not_yet_valid", json.dumps(good), "not_yet_valid", now=NOW - 61)
    case("bad_lifetime", json.dumps(good), "bad_lifetime", max_lifetime=60)
    other = AgentKeys.generate().public()  # random: only its absence from our keys matters
    case(
        "not_for_this_agent", request(kem, agents=[other]).to_bytes().decode(), "not_for_this_agent"
    )
    moved = request(kem, request_id="9f2c1d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f")
    moved_doc = json.loads(moved.to_bytes())
    moved_doc["sealed"] = good["sealed"]
    case("sealed_moved_to_other_request", _resign(moved_doc), "decrypt_failed")
    return {
        "description": "Requests the agent must refuse, each with the reason. Keys and "
        "verifier settings are those of request-x25519.json unless a case overrides them "
        "(portal_not_after: the portal key's not_after in the keyring).",
        "keys_from": "request-x25519.json",
        "cases": cases,
    }


def result_vector(request_hash: str) -> dict[str, Any]:
    keys = agent_keys("x25519")
    body = make_result(
        request_id=REQUEST_ID,
        request_hash=request_hash,
        agent_id="agent-1",
        tenant=TENANT,
        status=Status.POLICY_VIOLATION,
        reason="too_short",
        detail="minimum length 12",
        dc="dc1.acme.example",
        policy={"min_length": 12, "complexity": True, "history": 24},
        received_at=NOW + 1,
        completed_at=NOW + 2,
    )
    payload = body.model_dump(mode="json")
    return {
        "description": "A signed result answering request-x25519.json.",
        "agent_signing_private_key": b64url_encode(AGENT_SIGN_SEED),
        "agent_public": keys.public("agent-1").model_dump(mode="json"),
        "result": payload,
        "signature_input_hex": hexs(signature_input(Domain.RESULT, payload)),
        "wire": sign_result(body, keys).decode("utf-8"),
    }


def canonical_vectors() -> dict[str, Any]:
    valid = [
        ("sorted_keys", {"b": 1, "a": [True, False, None], "A": {}}),
        ("utf16_key_order", {"\U0001f600": 1, "\ufb01": 2, "é": 3, "z": 4}),
        ("escapes", {"s": 'quote" backslash\\ nl\n tab\t ctl\x01 del\x7f é € 😀 \u2028'}),
        ("integers", [0, -1, 9007199254740991, -9007199254740991]),
        ("empty", {"a": "", "b": [], "c": {}}),
    ]
    invalid = [
        ("float", "1.5"),
        ("float_integral", "1.0"),
        ("unsafe_integer", "9007199254740992"),
        ("lone_surrogate", '"\\ud800"'),
    ]
    return {
        "description": "Canonical JSON (RFC 8785 for our subset): input JSON text -> bytes.",
        "valid": [
            {"name": n, "input": json.dumps(v), "canonical_hex": hexs(canonical_json(v))}
            for n, v in valid
        ],
        "invalid": [{"name": n, "input": t} for n, t in invalid],
    }


def key_vectors() -> dict[str, Any]:
    out: dict[str, Any] = {"description": "Raw private key -> raw public key -> key id."}
    s = ed25519.Ed25519PrivateKey.from_private_bytes(PORTAL_SEED)
    out["ed25519"] = {
        "private": b64url_encode(PORTAL_SEED),
        "public": b64url_encode(s.public_key().public_bytes_raw()),
        "kid": portal().kid,
    }
    for kem, seed in KEM_SEEDS.items():
        k = KemPrivateKey.from_private_raw(kem, seed)  # type: ignore[arg-type]
        out[kem] = {
            "private": b64url_encode(seed),
            "public": b64url_encode(k.public_raw()),
            "kid": k.kid,
        }
    return out


def write(name: str, doc: dict[str, Any]) -> None:
    (OUT / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write("canonical.json", canonical_vectors())
    write("keys.json", key_vectors())
    x = request_vector("x25519")
    write("request-x25519.json", x)
    write("request-mlkem768-x25519.json", request_vector("mlkem768-x25519"))
    write("rejections.json", rejection_vectors())
    write("result.json", result_vector(x["request_hash"]))


if __name__ == "__main__":
    main()
