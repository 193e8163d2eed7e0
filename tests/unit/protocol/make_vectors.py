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

from cloud.sdk import PortalSigner, SignedRequest, build_request
from wire import AgentKeys, KemPrivateKey, Status, make_result, sign_result
from wire.canonical import b64url_decode, b64url_encode, canonical_json, sha256, sha256_b64
from wire.keys import key_id, xwing_expand_seed
from wire.messages import KemAlg
from wire.sealing import SEAL_DOMAIN, seal_info, suite
from wire.signing import Domain, signature_input

from . import ed25519_math
from .make_relay_vectors import relay_vectors

OUT = Path(__file__).resolve().parents[3] / "docs" / "test-vectors"

NOW = 1_800_000_000
REQUEST_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
OTHER_REQUEST_ID = "9f2c1d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"
TENANT, GROUP = "acme", "hq"
PORTAL_SEED = bytes(range(32))
AGENT_SIGN_SEED = bytes(range(96, 128))
KEM_SEEDS: dict[str, bytes] = {
    "x25519": bytes(range(32, 64)),
    # The X-Wing 32-byte seed; its 96-byte expanded form is published beside it.
    "mlkem768-x25519": bytes(range(64, 96)),
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
        "agent_kem_private_key_expanded": b64url_encode(keys.kem.expanded_private_raw()),
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


def _sig_over(doc: dict[str, Any], seed: bytes = PORTAL_SEED) -> str:
    payload = {"header": doc["header"], "sealed": doc["sealed"]}
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return b64url_encode(key.sign(signature_input(Domain.REQUEST, payload)))


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


def _noncanonical_tail(b64: str) -> str:
    """Same bytes to a lenient decoder: set the unused low bits of the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 0b1111, 3: 0b11}[len(b64) % 4]
    return b64[:-1] + alphabet[alphabet.index(b64[-1]) | unused]


def _padded(b64: str) -> str:
    return b64 + "=" * (-len(b64) % 4)


def _header(**kw: Any) -> dict[str, Any]:
    h: dict[str, Any] = {
        "v": 1,
        "type": "request",
        "id": REQUEST_ID,
        "tenant": TENANT,
        "agent_group": GROUP,
        "op": "change",
        "user": {"kind": "upn", "value": "jürgen@acme.example"},
        "options": {"unlock": False, "must_change": False},
        "iat": NOW,
        "exp": NOW + 120,
        "kem": "x25519",
    }
    h.update(kw)
    return h


def _sealed_doc(header: dict[str, Any], plaintext: bytes | None, **entries: Any) -> dict[str, Any]:
    """A request document; ``plaintext`` sealed with x25519 to the x25519 agent key under
    its kid (or under ``kid=`` / with ``seal_kem=``), none when plaintext is None."""
    sealed: dict[str, str] = {}
    if plaintext is not None:
        keys = agent_keys("x25519")
        kid = entries.get("kid", keys.kem.kid)
        info = SEAL_DOMAIN + header["id"].encode() + b"\x00" + sha256(canonical_json(header))
        ct = suite("x25519").encrypt(plaintext, keys.public().hpke_public_key(), info=info)
        sealed[kid] = b64url_encode(ct)
    return {"header": header, "sealed": sealed}


def _pt(new: str | None, old: str | None) -> bytes:
    return canonical_json({"new_password": new, "old_password": old})


def rejection_vectors() -> dict[str, Any]:  # noqa: PLR0915 - one flat list of cases reads best
    kem: KemAlg = "x25519"
    good_req = request(kem)
    good = json.loads(good_req.to_bytes())
    good_text = good_req.to_bytes().decode("utf-8")
    cases: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []

    def case(name: str, wire: str | bytes, reason: str, **verifier: Any) -> None:
        entry: dict[str, Any] = {"name": name, "reason": reason, "verifier": verifier}
        if isinstance(wire, bytes):
            entry["wire_hex"] = wire.hex()
        else:
            entry["wire"] = wire
        cases.append(entry)

    def accept(name: str, wire: str, plaintext: bytes | None, **verifier: Any) -> None:
        accepted.append(
            {
                "name": name,
                "wire": wire,
                "plaintext_hex": None if plaintext is None else plaintext.hex(),
                "verifier": verifier,
            }
        )

    def mutated(fn: Any, resign: bool = False) -> str:
        doc = json.loads(json.dumps(good))
        fn(doc)
        return _resign(doc) if resign else canonical_json(doc).decode("utf-8")

    def signed(header: dict[str, Any], plaintext: bytes | None, **kw: Any) -> str:
        return _resign(_sealed_doc(header, plaintext, **kw))

    kid = next(iter(good["sealed"]))
    change_pt = _pt("Ünïcode-N3w!", '0ld-Pa55"\\')
    # 1. size
    case("too_large", json.dumps(good), "too_large", max_bytes=256)
    # 2. strict parse
    case("not_json", '{"header":', "malformed")
    case("duplicate_key_toplevel_only", '{"a":1,"a":1}', "malformed")
    case(
        "duplicate_key_same_value",
        good_text.replace('"tenant":"acme"', '"tenant":"acme","tenant":"acme"'),
        "malformed",
    )
    case("byte_order_mark", "\ufeff" + good_text, "malformed")
    bad_utf8_doc = json.loads(json.dumps(good))
    bad_utf8_doc["header"]["user"]["value"] = "j\ufffdrgen@acme.example"
    bad_utf8 = _resign(bad_utf8_doc).encode("utf-8").replace("\ufffd".encode(), b"\xfc")
    case("invalid_utf8_replaced_by_lenient_decoder", bad_utf8, "malformed")
    case("version_as_float", good_text.replace('"v":1}', '"v":1.0}'), "malformed")
    case("integer_with_exponent", good_text.replace(f'"iat":{NOW}', '"iat":1.8e9'), "malformed")
    case("integer_as_float", good_text.replace(f'"iat":{NOW}', f'"iat":{NOW}.0'), "malformed")
    # 3. version before schema
    case("unsupported_version", mutated(lambda d: d["header"].update(v=2)), "unsupported_version")
    case(
        "unsupported_version_with_unknown_field",
        mutated(lambda d: d["header"].update(v=2, priority="high"), resign=True),
        "unsupported_version",
    )
    case(
        "unsupported_version_without_op",
        mutated(lambda d: (d["header"].update(v=2), d["header"].pop("op")), resign=True),
        "unsupported_version",
    )

    # 2. strict parse, seen only because it comes before the version check
    def nested(levels: int) -> str:
        return "[" * levels + "1" + "]" * levels

    def v2(x: str) -> str:
        assert good_text.count('"v":1}') == 1
        return good_text.replace('"v":1}', '"v":2,"x":' + x + "}")

    # the envelope and the header enclose x: 2 + 31 lists = 33 around the 1
    case("nesting_33_levels_before_version", v2(nested(31)), "malformed")
    case("nesting_32_levels_is_fine", v2(nested(30)), "unsupported_version")
    case("lone_surrogate_before_version", v2('"\\ud800"'), "malformed")
    # 4. schema
    case("missing_field", mutated(lambda d: d["header"].pop("exp"), resign=True), "malformed")
    case("extra_field", mutated(lambda d: d["header"].update(x=1), resign=True), "malformed")
    case(
        "wrong_type", mutated(lambda d: d["header"].update(iat=str(NOW)), resign=True), "malformed"
    )
    case(
        "missing_options",
        mutated(lambda d: d["header"].pop("options"), resign=True),
        "malformed",
    )
    case(
        "missing_options_on_unlock",
        signed({k: v for k, v in _header(op="unlock").items() if k != "options"}, None),
        "malformed",
    )
    case(
        "user_value_257_code_points",
        signed(_header(user={"kind": "upn", "value": "\U0001f600" * 257}), change_pt),
        "malformed",
    )
    case(
        "user_value_control_character",
        signed(_header(user={"kind": "login", "value": "j\u0007rgen"}), change_pt),
        "malformed",
    )
    case(
        "user_value_delete_character",
        signed(_header(user={"kind": "login", "value": "j\u007frgen"}), change_pt),
        "malformed",
    )
    case("id_uppercase", signed(_header(id=REQUEST_ID.upper()), change_pt), "malformed")
    case(
        "signature_noncanonical_trailing_bits",
        mutated(lambda d: d["sig"].update(value=_noncanonical_tail(d["sig"]["value"]))),
        "malformed",
    )
    case(
        "signature_padded",
        mutated(lambda d: d["sig"].update(value=d["sig"]["value"] + "==")),
        "malformed",
    )
    for length in (21, 22, 23):  # 43 + 16 + a password of this many ASCII characters
        pt = _pt("x" * length, None)
        doc = _sealed_doc(_header(op="reset"), pt)
        entry = next(iter(doc["sealed"].values()))
        if len(entry) % 4 in (2, 3):
            padded = {**doc, "sealed": {k: _padded(v) for k, v in doc["sealed"].items()}}
            case("sealed_padded", _resign(padded), "malformed")
            doc["sealed"] = {k: _noncanonical_tail(v) for k, v in doc["sealed"].items()}
            case("sealed_noncanonical_trailing_bits", _resign(doc), "malformed")
            break
    case("unlock_with_sealed", signed(_header(op="unlock"), _pt("x" * 12, None)), "malformed")
    case("preflight_with_sealed", signed(_header(op="preflight"), _pt("x" * 12, None)), "malformed")
    case("reset_without_sealed", signed(_header(op="reset"), None), "malformed")
    case("authenticate_without_sealed", signed(_header(op="authenticate"), None), "malformed")
    case(
        "kid_prefix_not_header_kem",
        signed(_header(kem="mlkem768-x25519"), change_pt),
        "malformed",
    )

    def with_others(count: int, length: int = 24) -> str:
        """Our entry plus ``count`` entries for other agents, ``length`` characters each."""
        doc = _sealed_doc(_header(), change_pt)
        for i in range(count):
            doc["sealed"][f"x25519_{i:022d}"] = "A" * length
        return _resign(doc)

    case("sealed_65_entries", with_others(64), "malformed")
    case("sealed_entry_10242_characters", with_others(1, 10242), "malformed")
    # 5.-8. key, signature, recipient, time
    case(
        "unknown_key",
        _resign(json.loads(json.dumps(good)), PortalSigner.from_private_bytes(bytes(32))),
        "unknown_key",
    )
    case("key_not_yet_valid", json.dumps(good), "unknown_key", portal_not_before=NOW + 6)
    case("retired_key", json.dumps(good), "retired_key", portal_not_after=NOW + 4)
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

    def s_plus_l(d: dict[str, Any]) -> None:
        raw = b64url_decode(d["sig"]["value"])
        s = int.from_bytes(raw[32:], "little") + ed25519_math.L
        d["sig"]["value"] = b64url_encode(raw[:32] + s.to_bytes(32, "little"))

    case("signature_s_not_reduced", mutated(s_plus_l), "bad_signature")

    def torsion_r(d: dict[str, Any]) -> None:
        msg = signature_input(Domain.REQUEST, {"header": d["header"], "sealed": d["sealed"]})
        d["sig"]["value"] = b64url_encode(ed25519_math.sign_with_torsion_r(PORTAL_SEED, msg))

    case("signature_valid_only_cofactored", mutated(torsion_r), "bad_signature")

    def noncanonical_r(d: dict[str, Any]) -> None:
        msg = signature_input(Domain.REQUEST, {"header": d["header"], "sealed": d["sealed"]})
        sig = ed25519_math.sign_with_noncanonical_identity_r(PORTAL_SEED, msg)
        d["sig"]["value"] = b64url_encode(sig)

    case("signature_r_noncanonical", mutated(noncanonical_r), "bad_signature")
    case("wrong_tenant", json.dumps(good), "wrong_tenant", tenant="other")
    case("wrong_agent_group", json.dumps(good), "wrong_agent_group", agent_group="branch")
    case("bad_lifetime", json.dumps(good), "bad_lifetime", max_lifetime=119)
    case(
        "bad_lifetime_zero",
        signed(_header(exp=NOW), change_pt),
        "bad_lifetime",
    )
    case("not_yet_valid", json.dumps(good), "not_yet_valid", now=NOW - 61)
    case("expired", json.dumps(good), "expired", now=NOW + 120 + 61)
    # 10.-12. decryption
    other = AgentKeys.generate().public()  # random: only its absence from our keys matters
    case(
        "not_for_this_agent", request(kem, agents=[other]).to_bytes().decode(), "not_for_this_agent"
    )
    case(
        "sealed_to_us_under_another_kid",
        signed(_header(), change_pt, kid=other.kem_kid),
        "not_for_this_agent",
    )
    case(
        "kid_matches_only_after_the_prefix",
        signed(
            _header(kem="mlkem768-x25519"),
            change_pt,
            kid="mlkem768x25519_" + agent_keys("x25519").kem.kid.split("_", 1)[1],
        ),
        "not_for_this_agent",
    )
    moved = request(kem, request_id="9f2c1d3e-5b6a-4c7d-8e9f-0a1b2c3d4e5f")
    moved_doc = json.loads(moved.to_bytes())
    moved_doc["sealed"] = good["sealed"]
    case("sealed_moved_to_other_request", _resign(moved_doc), "decrypt_failed")
    short = _sealed_doc(_header(), change_pt)
    short["sealed"] = {k: v[:40] for k, v in short["sealed"].items()}
    case("sealed_too_short", _resign(short), "decrypt_failed")
    secret_cases = {
        "secret_reset_with_old_password": ("reset", _pt("N3w-Passw0rd!", "0ld-Passw0rd")),
        "secret_change_without_old_password": ("change", _pt("N3w-Passw0rd!", None)),
        "secret_authenticate_with_new_password": (
            "authenticate",
            _pt("N3w-Passw0rd!", "0ld-Passw0rd"),
        ),
        "secret_empty_password": ("reset", _pt("", None)),
        "secret_513_code_points": ("reset", _pt("\U0001f600" * 513, None)),
        "secret_extra_member": (
            "reset",
            canonical_json({"new_password": "N3w", "old_password": None, "otp": "1"}),
        ),
        "secret_missing_member": ("reset", canonical_json({"new_password": "N3w-Passw0rd!"})),
        "secret_not_canonical_whitespace": (
            "reset",
            b'{"new_password": "N3w-Passw0rd!", "old_password": null}',
        ),
        "secret_not_canonical_key_order": (
            "reset",
            b'{"old_password":null,"new_password":"N3w-Passw0rd!"}',
        ),
        "secret_uppercase_u_escape": (
            "reset",
            b'{"new_password":"N3w\\u001F-Passw0rd!","old_password":null}',
        ),
        "secret_u_escape_for_backspace": (
            "reset",
            b'{"new_password":"N3w\\u0008-Passw0rd!","old_password":null}',
        ),
        "secret_escaped_slash": (
            "reset",
            b'{"new_password":"N3w\\/Passw0rd!","old_password":null}',
        ),
        "secret_number_password": ("reset", b'{"new_password":12345678,"old_password":null}'),
        "secret_duplicate_key": (
            "reset",
            b'{"new_password":"a","new_password":"N3w-Passw0rd!","old_password":null}',
        ),
        "secret_not_json": ("reset", b"N3w-Passw0rd!"),
    }
    for name, (op, pt) in secret_cases.items():
        case(name, signed(_header(op=op), pt), "malformed")

    # Requests a strict verifier must accept (boundaries and forms that look odd).
    # Two failures at once: the earlier step of section 6 gives the reason.
    def wire_of(name: str) -> str:
        return str(next(c["wire"] for c in cases if c["name"] == name))

    bad_sig, not_ours = wire_of("header_changed"), wire_of("not_for_this_agent")
    case("too_large_before_parse", "{" + "x" * 300, "too_large", max_bytes=256)
    case("retired_before_signature", bad_sig, "retired_key", portal_not_after=NOW + 4)
    case("signature_before_tenant", bad_sig, "bad_signature", tenant="other")
    case("tenant_before_group", good_text, "wrong_tenant", tenant="other", agent_group="branch")
    case("group_before_lifetime", good_text, "wrong_agent_group", agent_group="b", max_lifetime=119)
    case("lifetime_before_iat", good_text, "bad_lifetime", max_lifetime=119, now=NOW - 61)
    case("expired_before_recipient", not_ours, "expired", now=NOW + 181)
    case("tenant_differs_in_case", good_text, "wrong_tenant", tenant="ACME")
    case("agent_group_differs_in_case", good_text, "wrong_agent_group", agent_group="HQ")
    accept("change", good_text, change_pt)
    accept("size_at_limit", good_text, change_pt, max_bytes=len(good_text.encode("utf-8")))
    accept("sealed_64_entries", with_others(63), change_pt)
    accept("sealed_entry_10240_characters", with_others(1, 10240), change_pt)
    accept("key_valid_from_now", good_text, change_pt, portal_not_before=NOW + 5)
    accept("key_valid_until_now", good_text, change_pt, portal_not_after=NOW + 5)
    accept("lifetime_at_limit", good_text, change_pt, max_lifetime=120)
    accept("iat_at_skew_limit", good_text, change_pt, now=NOW - 60)
    accept("exp_at_skew_limit", good_text, change_pt, now=NOW + 120 + 60)
    accept("wire_not_canonical", json.dumps(good), change_pt)
    controls = 'ctl\x1f bs\b ff\f cr\r tab\t nl\n del\x7f quote" bsl\\ u2028\u2028 😀'
    pt = _pt(controls, None)
    accept("secret_with_control_characters", signed(_header(op="reset"), pt), pt)
    pt = _pt("\U0001f600" * 512, None)
    accept("secret_512_code_points", signed(_header(op="reset"), pt), pt)
    accept(
        "user_value_256_code_points",
        signed(_header(user={"kind": "upn", "value": "\U0001f600" * 256}), change_pt),
        change_pt,
    )
    pt = _pt(None, "Curr3nt-Passw0rd!")
    accept("authenticate", signed(_header(op="authenticate"), pt), pt)
    for op in ("unlock", "preflight"):
        accept(
            op, signed(_header(op=op, options={"unlock": True, "must_change": True}), None), None
        )
    return {
        "description": "Requests the agent must refuse, each with the reason, and requests "
        "it must accept. Keys and verifier settings are those of request-x25519.json unless "
        "a case overrides them (portal_not_before / portal_not_after: the portal key's "
        "window in the keyring). wire_hex instead of wire: the bytes are not UTF-8.",
        "keys_from": "request-x25519.json",
        "cases": cases,
        "accepted": accepted,
    }


def _signed_result(payload: dict[str, Any], seed: bytes = AGENT_SIGN_SEED) -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    kid = key_id("ed25519", key.public_key().public_bytes_raw())
    value = b64url_encode(key.sign(signature_input(Domain.RESULT, payload)))
    return canonical_json(
        {"result": payload, "sig": {"kid": kid, "alg": "ed25519", "value": value}}
    ).decode("utf-8")


def _in(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced (so a vector never silently stays valid)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def result_vector(request_hash: str) -> dict[str, Any]:
    keys = agent_keys("x25519")
    body = make_result(
        request_id=REQUEST_ID,
        request_hash=request_hash,
        agent_id="agent-1",
        tenant=TENANT,
        status=Status.POLICY_VIOLATION,
        reason="too_short",
        # Control characters are allowed in detail: they make a result verifier's
        # canonical encoder show its escapes (U+001F lowercase, \b \f \r short).
        detail="minimum length 12\x1f\b\f\r\t\n\x00",
        dc="dc1.acme.example",
        policy={
            "min_length": 12,
            "max_length": None,
            "complexity": True,
            "history_length": 24,
            "min_age_seconds": 0,
            "max_age_seconds": None,
            "lockout_threshold": 0,
        },
        received_at=NOW + 1,
        completed_at=NOW + 2,
    )
    payload = body.model_dump(mode="json")
    wire = sign_result(body, keys).decode("utf-8")
    cases: list[dict[str, Any]] = []

    def case(name: str, wire: str, reason: str, **settings: Any) -> None:
        cases.append({"name": name, "wire": wire, "reason": reason, "settings": settings})

    def changed(**kw: Any) -> dict[str, Any]:
        return {**json.loads(json.dumps(payload)), **kw}

    case("too_large", wire, "too_large", max_bytes=512)
    case("not_json", '{"result":', "malformed")
    case(
        "duplicate_key",
        wire.replace('"tenant":"acme"', '"tenant":"acme","tenant":"acme"'),
        "malformed",
    )
    case("minus_zero", _in(wire, '"min_age_seconds":0', '"min_age_seconds":-0'), "malformed")
    case("float", _in(wire, '"history_length":24', '"history_length":24.0'), "malformed")
    case("exponent", _in(wire, '"history_length":24', '"history_length":2.4e1'), "malformed")
    deep = "[" * 31 + "1" + "]" * 31  # inside result, policy and 31 lists: 33
    case(
        "nesting_33_levels",
        _in(wire, '"lockout_threshold":0', '"lockout_threshold":' + deep),
        "malformed",
    )
    case("lone_surrogate", _in(wire, "minimum length 12", "minimum length 12\\ud800"), "malformed")
    case(
        "detail_2001_code_points", _signed_result(changed(detail="\U0001f600" * 2001)), "malformed"
    )
    case("message_control_character", _signed_result(changed(message="a\u0007b")), "malformed")
    case("reason_not_a_reason", _signed_result(changed(reason="Too Short")), "malformed")
    case("byte_order_mark", "\ufeff" + wire, "malformed")
    case("unknown_status", _signed_result(changed(status="maybe")), "malformed")
    case(
        "unsupported_version",
        _signed_result(changed(v=2, extra={"a": 1})),
        "unsupported_version",
    )
    case("unknown_key", _signed_result(payload, bytes(32)), "unknown_key")
    case(
        "changed_after_signing",
        wire.replace("minimum length 12", "minimum length 13"),
        "bad_signature",
    )
    case("agent_id_not_the_signer", _signed_result(changed(agent_id="agent-2")), "bad_signature")
    case("other_request_id", _signed_result(changed(request_id=OTHER_REQUEST_ID)), "wrong_request")
    case(
        "other_request_hash",
        _signed_result(changed(request_hash=sha256_b64(b"other"))),
        "wrong_request",
    )
    case(
        "request_hash_null_but_not_rejected",
        _signed_result(changed(request_hash=None)),
        "malformed",
    )

    def s_plus_l(text: str) -> str:
        doc = json.loads(text)
        raw = b64url_decode(doc["sig"]["value"])
        s = int.from_bytes(raw[32:], "little") + ed25519_math.L
        doc["sig"]["value"] = b64url_encode(raw[:32] + s.to_bytes(32, "little"))
        return canonical_json(doc).decode("utf-8")

    case("signature_s_not_reduced", s_plus_l(wire), "bad_signature")
    case("other_tenant", _signed_result(changed(tenant="other")), "wrong_tenant")
    return {
        "description": "A signed result answering request-x25519.json, and results a portal "
        "must refuse (checked against that request and agent_public; settings.max_bytes "
        "overrides the 65536-byte limit).",
        "agent_signing_private_key": b64url_encode(AGENT_SIGN_SEED),
        "agent_public": keys.public("agent-1").model_dump(mode="json"),
        "result": payload,
        "signature_input_hex": hexs(signature_input(Domain.RESULT, payload)),
        "wire": wire,
        "rejections": cases,
    }


def canonical_vectors() -> dict[str, Any]:
    valid = [
        ("sorted_keys", {"b": 1, "a": [True, False, None], "A": {}}),
        ("utf16_key_order", {"\U0001f600": 1, "\ufb01": 2, "é": 3, "z": 4}),
        ("escapes", {"s": 'quote" backslash\\ nl\n tab\t ctl\x01 del\x7f é € 😀 \u2028'}),
        ("control_u001f_lowercase_hex", ["\x1f", "\x0b", "\x00", "\x1a"]),
        ("short_escapes_b_f_r", ["\b", "\f", "\r", "\t", "\n"]),
        ("solidus_not_escaped", "a/b"),
        ("integers", [0, -1, 9007199254740991, -9007199254740991]),
        ("empty", {"a": "", "b": [], "c": {}}),
        ("nesting_32_levels", json.loads("[" * 32 + "1" + "]" * 32)),
    ]
    invalid = [
        ("float", "1.5"),
        ("float_integral", "1.0"),
        ("unsafe_integer", "9007199254740992"),
        ("lone_surrogate", '"\\ud800"'),
        ("minus_zero", "-0"),
        ("exponent", "1e2"),
        ("exponent_integral", "10E0"),
        ("nan", "NaN"),
        ("duplicate_key", '{"a":1,"a":2}'),
        ("byte_order_mark", "\ufeff{}"),
        ("nesting_33_levels", "[" * 33 + "1" + "]" * 33),
    ]
    noncanonical = [
        ("uppercase_u_escape", '"\\u001F"'),
        ("u_escape_for_short_form", '["\\u0008","\\u000c","\\u000d"]'),
        ("escaped_solidus", '"a\\/b"'),
        ("escaped_non_ascii", '"\\u00e9"'),
        ("whitespace", '{ "a" : 1 }'),
        ("unsorted", '{"b":1,"a":2}'),
    ]
    return {
        "description": "Canonical JSON (RFC 8785 for our subset): input JSON text -> bytes. "
        "valid: canonical bytes of the input; invalid: inputs a receiver must refuse; "
        "noncanonical: accepted as input, but their bytes are not canonical (a canonical "
        "encoder never produces them; a secret part in this form is refused).",
        "valid": [
            {"name": n, "input": json.dumps(v), "canonical_hex": hexs(canonical_json(v))}
            for n, v in valid
        ],
        "invalid": [{"name": n, "input": t} for n, t in invalid],
        "noncanonical": [
            {
                "name": n,
                "input": t,
                "canonical_hex": hexs(canonical_json(json.loads(t))),
            }
            for n, t in noncanonical
        ],
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
    hybrid = out["mlkem768-x25519"]
    hybrid["private_expanded"] = b64url_encode(xwing_expand_seed(KEM_SEEDS["mlkem768-x25519"]))
    hybrid["public_mlkem768"] = b64url_encode(b64url_decode(hybrid["public"])[:1184])
    hybrid["public_x25519"] = b64url_encode(b64url_decode(hybrid["public"])[1184:])
    p = ed25519_math.P
    out["ed25519_invalid_public_keys"] = [
        {"name": "identity_small_order", "key": b64url_encode((1).to_bytes(32, "little"))},
        {
            "name": "order_8_point",
            "key": b64url_encode(ed25519_math.encode(ed25519_math.torsion8())),
        },
        {"name": "order_2_point", "key": b64url_encode((p - 1).to_bytes(32, "little"))},
        {"name": "noncanonical_identity", "key": b64url_encode((p + 1).to_bytes(32, "little"))},
        {"name": "noncanonical_y_3", "key": b64url_encode((p + 3).to_bytes(32, "little"))},
        {"name": "not_on_curve", "key": b64url_encode((2).to_bytes(32, "little"))},
    ]
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
    write("relay.json", relay_vectors())


if __name__ == "__main__":
    main()
