"""Each mistake an outside implementer could make fails at least one published vector.

toy_verifier.py is a second verifier written from docs/protocol.md; switched to be
correct it must agree with every vector, and with any one mistake switched on some
vector must disagree. A mistake that no vector catches is a hole in the vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from wire.canonical import b64url_decode

from . import toy_verifier as toy

VECTORS = Path(__file__).resolve().parents[3] / "docs" / "test-vectors"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((VECTORS / name).read_text(encoding="utf-8")))


def _settings(v: dict[str, Any], overrides: dict[str, Any], mistakes: set[str]) -> toy.Settings:
    cfg = {**v["verifier"], **overrides}
    portal = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(v["portal_private_key"]))
    return toy.Settings(
        portal_key=portal.public_key().public_bytes_raw(),
        kem=v["agent_kem"],
        kem_private=b64url_decode(v["agent_kem_private_key"]),
        kem_kid=v["agent_kem_kid"],
        mistakes=mistakes,
        **cfg,
    )


def _outcome(raw: bytes, cfg: toy.Settings) -> Any:
    try:
        return toy.verify(raw, cfg)
    except toy.Reject as exc:
        return ("rejected", exc.reason)
    except Exception as exc:  # noqa: BLE001 - a crash is a disagreement too
        return ("crashed", type(exc).__name__)


def _wire(case: dict[str, Any]) -> bytes:
    if "wire_hex" in case:
        return bytes.fromhex(case["wire_hex"])
    return str(case["wire"]).encode("utf-8")


def disagreements(mistakes: set[str]) -> list[str]:
    """Names of the vectors on which the toy verifier with ``mistakes`` is wrong."""
    wrong: list[str] = []
    for name in ("request-x25519.json", "request-mlkem768-x25519.json"):
        v = load(name)
        got = _outcome(v["wire"].encode("utf-8"), _settings(v, {}, mistakes))
        if got != json.loads(bytes.fromhex(v["plaintext_hex"])):
            wrong.append(name)
    doc = load("rejections.json")
    v = load(doc["keys_from"])
    for case in doc["cases"]:
        got = _outcome(_wire(case), _settings(v, case["verifier"], mistakes))
        if got != ("rejected", case["reason"]):
            wrong.append(f"rejections/{case['name']}")
    for case in doc["accepted"]:
        got = _outcome(_wire(case), _settings(v, case["verifier"], mistakes))
        want = (
            None
            if case["plaintext_hex"] is None
            else json.loads(bytes.fromhex(case["plaintext_hex"]))
        )
        if got != want:
            wrong.append(f"accepted/{case['name']}")
    for case in load("canonical.json")["valid"]:
        if toy.canonical(json.loads(case["input"]), mistakes).hex() != case["canonical_hex"]:
            wrong.append(f"canonical/{case['name']}")
    result = load("result.json")
    sig_input = bytes.fromhex(result["signature_input_hex"])
    if b"writeback-agent/result/v1\x00" + toy.canonical(result["result"], mistakes) != sig_input:
        wrong.append("result/signature_input")
    for case in load("canonical.json")["invalid"]:
        try:
            toy.canonical(toy.parse(case["input"].encode("utf-8"), mistakes), mistakes)
            wrong.append(f"canonical-invalid/{case['name']}")
        except (ValueError, toy.Reject):
            pass
    for case in load("keys.json")["ed25519_invalid_public_keys"]:
        try:
            toy.public_key(b64url_decode(case["key"]), mistakes)
            wrong.append(f"keys/{case['name']}")
        except ValueError:
            pass
    return wrong


def test_the_correct_toy_verifier_agrees_with_every_vector() -> None:
    assert disagreements(set()) == []


@pytest.mark.parametrize("mistake", sorted(toy.MISTAKES))
def test_each_mistake_fails_some_vector(mistake: str) -> None:
    caught = disagreements({mistake})
    assert caught, f"no vector catches: {toy.MISTAKES[mistake]}"
