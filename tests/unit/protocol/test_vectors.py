"""The published test vectors (docs/test-vectors) hold for this implementation.

Everything deterministic is recomputed and compared byte for byte; the randomised
HPKE entries are checked by opening them with the published private keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud.sdk import PortalSigner, ResultRejected, SignedRequest, verify_result
from wire import (
    AgentKeys,
    AgentPublicKeys,
    EncodingError,
    KemPrivateKey,
    PortalKeyring,
    Rejected,
    RejectReason,
    RequestEnvelope,
    RequestVerifier,
    TrustedPortalKey,
    key_id,
)
from wire.canonical import b64url_decode, b64url_encode, canonical_json, parse_json, sha256
from wire.keys import ed25519_public_key
from wire.messages import RequestHeader
from wire.sealing import open_sealed, seal_info
from wire.signing import Domain, signature_input

from .independent_hpke import open_entry, shared_secret

VECTORS = Path(__file__).resolve().parents[3] / "docs" / "test-vectors"
REQUEST_FILES = ["request-x25519.json", "request-mlkem768-x25519.json"]


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((VECTORS / name).read_text(encoding="utf-8")))


def test_canonical_vectors() -> None:
    doc = load("canonical.json")
    for case in doc["valid"]:
        assert canonical_json(json.loads(case["input"])).hex() == case["canonical_hex"], case[
            "name"
        ]
    for case in doc["invalid"]:
        with pytest.raises(ValueError):  # EncodingError is a ValueError
            canonical_json(parse_json(case["input"].encode("utf-8")))
    for case in doc["noncanonical"]:
        text = case["input"].encode("utf-8")
        assert canonical_json(parse_json(text)).hex() == case["canonical_hex"], case["name"]
        assert canonical_json(parse_json(text)) != text, case["name"]
    assert issubclass(EncodingError, Exception)


def test_key_vectors() -> None:
    doc = load("keys.json")
    ed = doc["ed25519"]
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(ed["private"]))
    assert b64url_encode(sk.public_key().public_bytes_raw()) == ed["public"]
    assert key_id("ed25519", b64url_decode(ed["public"])) == ed["kid"]
    for kem in ("x25519", "mlkem768-x25519"):
        k = KemPrivateKey.from_private_raw(kem, b64url_decode(doc[kem]["private"]))
        assert b64url_encode(k.public_raw()) == doc[kem]["public"]
        assert k.kid == doc[kem]["kid"]
    hybrid = doc["mlkem768-x25519"]
    assert len(b64url_decode(hybrid["private"])) == 32
    expanded = KemPrivateKey.from_private_raw(
        "mlkem768-x25519", b64url_decode(hybrid["private_expanded"])
    )
    assert b64url_encode(expanded.public_raw()) == hybrid["public"]
    assert b64url_decode(hybrid["public"]) == b64url_decode(
        hybrid["public_mlkem768"]
    ) + b64url_decode(hybrid["public_x25519"])


def test_invalid_ed25519_public_keys_are_refused_where_keys_enter() -> None:
    for case in load("keys.json")["ed25519_invalid_public_keys"]:
        raw = b64url_decode(case["key"])
        with pytest.raises(ValueError):
            ed25519_public_key(raw)
        with pytest.raises(ValueError):
            TrustedPortalKey(kid=key_id("ed25519", raw), key=case["key"])


def _verifier(
    v: dict[str, Any], overrides: dict[str, Any] | None = None, *, private: str | None = None
) -> RequestVerifier:
    cfg = {**v["verifier"], **(overrides or {})}
    portal = PortalSigner.from_private_bytes(b64url_decode(v["portal_private_key"]))
    entry = portal.trusted_key(
        not_before=cfg.pop("portal_not_before", None), not_after=cfg.pop("portal_not_after", None)
    )
    assert entry.kid == v["portal_kid"]
    raw_private = b64url_decode(private or v["agent_kem_private_key"])
    kem = KemPrivateKey.from_private_raw(v["agent_kem"], raw_private)
    keys = AgentKeys(ed25519.Ed25519PrivateKey.generate(), kem)
    now = cfg.pop("now")
    return RequestVerifier(PortalKeyring([entry]), keys, clock=lambda: now, **cfg)


@pytest.mark.parametrize("name", REQUEST_FILES)
def test_request_vector(name: str) -> None:
    v = load(name)
    header = RequestHeader.model_validate(v["header"])
    assert header.canonical().hex() == v["canonical_header_hex"]
    assert sha256(header.canonical()).hex() == v["header_hash_hex"]
    assert seal_info(header).hex() == v["seal_info_hex"]
    signed = {"header": v["header"], "sealed": v["sealed"]}
    sig_input = signature_input(Domain.REQUEST, signed)
    assert sig_input.hex() == v["signature_input_hex"]
    portal = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(v["portal_private_key"]))
    assert b64url_encode(portal.sign(sig_input)) == v["signature"]  # Ed25519 is deterministic
    wire = v["wire"].encode("utf-8")
    envelope = {
        **signed,
        "sig": {"kid": v["portal_kid"], "alg": "ed25519", "value": v["signature"]},
    }
    assert canonical_json(envelope) == wire
    assert b64url_encode(sha256(wire)) == v["request_hash"]
    kem = KemPrivateKey.from_private_raw(v["agent_kem"], b64url_decode(v["agent_kem_private_key"]))
    assert kem.kid == v["agent_kem_kid"] and list(v["sealed"]) == [kem.kid]
    assert open_sealed(header, v["sealed"][kem.kid], kem).hex() == v["plaintext_hex"]
    # And end to end through the verifier, with the private key in each published form.
    forms = [v["agent_kem_private_key"], v["agent_kem_private_key_expanded"]]
    if v["agent_kem"] == "mlkem768-x25519":
        assert [len(b64url_decode(f)) for f in forms] == [32, 96]
    for form in forms:
        verified, secret = _verifier(v, private=form).verify_and_open(wire)
        assert verified.request_hash == v["request_hash"]
        plaintext = json.loads(bytes.fromhex(v["plaintext_hex"]))
        assert secret.new_password is not None and secret.old_password is not None
        assert secret.new_password.get_secret_value() == plaintext["new_password"]
        assert secret.old_password.get_secret_value() == plaintext["old_password"]
        # An implementation written from docs/protocol.md alone opens it too.
        raw = b64url_decode(form)
        info = seal_info(header)
        entry = b64url_decode(v["sealed"][kem.kid])
        assert open_entry(v["agent_kem"], raw, entry, info).hex() == v["plaintext_hex"]


def case_wire(case: dict[str, Any]) -> bytes:
    if "wire_hex" in case:
        return bytes.fromhex(case["wire_hex"])
    return str(case["wire"]).encode("utf-8")


def test_rejection_vectors() -> None:
    doc = load("rejections.json")
    v = load(doc["keys_from"])
    names = set()
    for case in doc["cases"]:
        names.add(case["reason"])
        with pytest.raises(Rejected) as info:
            _verifier(v, case["verifier"]).verify_and_open(case_wire(case))
        assert info.value.reason.value == case["reason"], case["name"]
    # every RejectReason the verifier produces (replayed and superseded come from the
    # journal and the relay, not from the verifier)
    assert names == {r.value for r in RejectReason} - {"replayed", "superseded"}


def test_accepted_vectors() -> None:
    doc = load("rejections.json")
    v = load(doc["keys_from"])
    for case in doc["accepted"]:
        _, secret = _verifier(v, case["verifier"]).verify_and_open(case_wire(case))
        got = {
            "new_password": _reveal(secret.new_password),
            "old_password": _reveal(secret.old_password),
        }
        want = (
            None
            if case["plaintext_hex"] is None
            else json.loads(bytes.fromhex(case["plaintext_hex"]))
        )
        assert got == (want or {"new_password": None, "old_password": None}), case["name"]


def _reveal(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def test_result_vector() -> None:
    v = load("result.json")
    request_vector = load("request-x25519.json")
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(v["agent_signing_private_key"]))
    sig_input = signature_input(Domain.RESULT, v["result"])
    assert sig_input.hex() == v["signature_input_hex"]
    agent = AgentPublicKeys.model_validate(v["agent_public"])
    wire = canonical_json(
        {
            "result": v["result"],
            "sig": {
                "kid": agent.sign_kid,
                "alg": "ed25519",
                "value": b64url_encode(sk.sign(sig_input)),
            },
        }
    )
    assert wire == v["wire"].encode("utf-8")
    request = SignedRequest(RequestEnvelope.model_validate(json.loads(request_vector["wire"])))
    result = verify_result(wire, request=request, trusted_agents=[agent])
    assert result.reason == "too_short"
    for case in v["rejections"]:
        with pytest.raises(ResultRejected) as info:
            verify_result(
                case["wire"].encode("utf-8"),
                request=request,
                trusted_agents=[agent],
                **case["settings"],
            )
        assert info.value.reason == case["reason"], case["name"]
    assert isinstance(TrustedPortalKey, type)  # re-exported for portals building keyrings


def test_hybrid_is_x_wing_as_the_draft_defines_it() -> None:
    """The X-Wing draft's own test vector: its 32-byte seed gives its public key through
    our key loading, and its ciphertext decapsulates to its shared secret through the
    combiner written from docs/protocol.md section 2.2."""
    v = json.loads((Path(__file__).parent / "data" / "xwing-draft-vector.json").read_text())
    sk = bytes.fromhex(v["sk"])
    key = KemPrivateKey.from_private_raw("mlkem768-x25519", sk)
    assert key.public_raw().hex() == v["pk"]
    assert key.private_raw() == sk
    assert shared_secret("mlkem768-x25519", sk, bytes.fromhex(v["ct"])).hex() == v["ss"]
    expanded = KemPrivateKey.from_private_raw("mlkem768-x25519", key.expanded_private_raw())
    assert expanded.public_raw().hex() == v["pk"]
