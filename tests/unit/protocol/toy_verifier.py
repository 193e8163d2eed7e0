"""A second request verifier, written from docs/protocol.md alone (no wire.verify, no
pydantic models, no cryptography HPKE), with switches that each make it commit one
mistake an outside implementer could make. With no switch on it must agree with every
vector; with any one switch on, some vector must catch it (test_mutations.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ed25519_math
from .independent_hpke import open_entry
from .toy_json import MAX_INT, Reject, b64, canonical, parse

__all__ = ["MISTAKES", "Reject", "Settings", "canonical", "parse", "public_key", "verify"]

MISTAKES = {
    "no_duplicate_key_check": "last duplicate object member wins",
    "bom_accepted": "a UTF-8 byte order mark is skipped",
    "invalid_utf8_replaced": "invalid UTF-8 is replaced by U+FFFD",
    "fraction_as_integer": "1.0 read as the integer 1",
    "exponent_as_integer": "1e0 read as the integer 1",
    "minus_zero_accepted": "-0 read as 0",
    "no_depth_limit": "nesting deeper than 32 levels accepted",
    "lone_surrogate_accepted": "an escaped lone surrogate accepted by the parser",
    "uppercase_u_hex": "canonical encoder writes \\u001F",
    "no_short_escapes": "canonical encoder writes \\u0008 for \\b, \\f, \\r",
    "escaped_solidus": "canonical encoder writes \\/",
    "escaped_del": "canonical encoder writes \\u007f",
    "codepoint_key_order": "object members sorted by code point, not UTF-16 unit",
    "b64_padding_accepted": "base64url with = padding accepted",
    "b64_trailing_bits_accepted": "base64url with non-zero unused bits accepted",
    "b64_errors_late": "bad base64url found only when decoding (decrypt_failed, bad_signature)",
    "ignore_not_before": "portal key used before its not_before",
    "exclusive_not_before": "portal key refused at now = not_before",
    "exclusive_not_after": "portal key refused at now = not_after",
    "exclusive_iat_skew": "request refused at iat = now + max_skew",
    "exclusive_exp_skew": "request refused at now = exp + max_skew",
    "exclusive_lifetime": "request refused at exp - iat = max_lifetime",
    "secret_unvalidated": "decrypted secret part read without any validation",
    "secret_noncanonical_accepted": "secret part not compared with its canonical bytes",
    "secret_ops_unchecked": "secret part's null/string members not checked against op",
    "secret_lengths_unchecked": "password lengths not checked",
    "secret_members_unchecked": "secret part's member set not checked",
    "no_kid_prefix_check": "suite taken from the agent key, kid prefix not compared to kem",
    "kid_hash_only": "sealed entry found by the part of the kid after the prefix",
    "any_sealed_entry": "every sealed entry tried with the agent key, kid ignored",
    "no_op_sealed_check": "sealed not checked against op",
    "version_after_schema": "header.v checked after the schema",
    "ed25519_cofactored": "cofactored equation [8][S]B = [8]R + [8][k]A",
    "ed25519_s_unreduced": "S >= L accepted (reduced mod L)",
    "ed25519_r_as_point": "R compared as a point, non-canonical encodings accepted",
    "lenient_ed25519": "ZIP-215: all three Ed25519 leniencies at once",
    "lenient_ed25519_keys": "public keys not checked for encoding and small order",
    "options_optional": "header.options may be left out",
    "exclusive_max_bytes": "a request of exactly max_bytes refused",
    "parse_before_size": "the size checked after parsing",
    "names_any_case": "tenant and agent group compared without case",
    "swap_retired_signature": "the signature checked before the key's not_after",
    "swap_signature_tenant": "the tenant checked before the signature",
    "swap_tenant_group": "the agent group checked before the tenant",
    "swap_group_lifetime": "the lifetime checked before the agent group",
    "swap_lifetime_iat": "iat checked before the lifetime",
    "swap_exp_recipient": "the recipient looked for before the expiry",
    "no_sealed_limits": "more than 64 sealed entries or entries over 10240 characters accepted",
    "utf16_lengths": "lengths counted in UTF-16 code units",
    "utf8_lengths": "lengths counted in UTF-8 bytes",
    "no_printable_check": "control characters accepted in user.value",
    "uuid_any_case": "uppercase hex accepted in header.id",
}

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z")
KEM_KID = re.compile(r"^(x25519|mlkem768x25519)_[A-Za-z0-9_-]{22}\Z")
SIGN_KID = re.compile(r"^ed25519_[A-Za-z0-9_-]{22}\Z")
PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*\Z")
OPS = {"reset": {"new_password"}, "change": {"new_password", "old_password"},
       "authenticate": {"old_password"}, "unlock": set(), "preflight": set()}  # fmt: skip
KID_KIND = {"x25519": "x25519", "mlkem768-x25519": "mlkem768x25519"}


@dataclass
class Settings:
    tenant: str
    agent_group: str
    now: int
    portal_key: bytes
    kem: str
    kem_private: bytes
    kem_kid: str
    max_bytes: int = 65536
    max_skew: int = 60
    max_lifetime: int = 900
    portal_not_before: int | None = None
    portal_not_after: int | None = None
    mistakes: set[str] = field(default_factory=set)


def public_key(raw: bytes, mistakes: set[str]) -> bytes:
    """What a keyring takes in: 32 bytes (lenient) or a checked point (strict)."""
    if len(raw) != 32:
        raise ValueError("length")
    return raw if "lenient_ed25519_keys" in mistakes else strict_public_key(raw)


def strict_public_key(raw: bytes) -> bytes:
    p = ed25519_math.P
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    pt = ed25519_math.point(y, raw[31] >> 7) if y < p else None
    if pt is None or ed25519_math.encode(ed25519_math.mul(8, pt)) == ed25519_math.encode(
        ed25519_math.IDENTITY
    ):
        raise ValueError("invalid ed25519 public key")
    return raw


# --- schema -------------------------------------------------------------------------


def _exact(obj: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise Reject("malformed")
    return obj


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_INT:
        raise Reject("malformed")
    return v


def _length(s: str, mistakes: set[str]) -> int:
    if "utf8_lengths" in mistakes:
        return len(s.encode("utf-8"))
    return len(s.encode("utf-16-le")) // 2 if "utf16_lengths" in mistakes else len(s)


def _str(v: Any, pattern: re.Pattern[str]) -> str:
    if not isinstance(v, str) or not pattern.match(v):
        raise Reject("malformed")
    return v


def _sealed(h: dict[str, Any], sealed: Any, m: set[str]) -> None:
    limits = "no_sealed_limits" not in m
    if not isinstance(sealed, dict) or (limits and len(sealed) > 64):
        raise Reject("malformed")
    for kid, entry in sealed.items():
        _str(kid, KEM_KID)
        if not isinstance(entry, str) or not 1 <= len(entry) <= (10240 if limits else 10**9):
            raise Reject("malformed")
        if "b64_errors_late" not in m:
            try:
                b64(entry, m)
            except ValueError as exc:
                raise Reject("malformed") from exc
        if "no_kid_prefix_check" not in m and not kid.startswith(KID_KIND[h["kem"]] + "_"):
            raise Reject("malformed")
    if "no_op_sealed_check" not in m and bool(sealed) != bool(OPS[h["op"]]):
        raise Reject("malformed")


def schema(doc: Any, m: set[str]) -> None:
    env = _exact(doc, {"header", "sealed", "sig"})
    keys = {
        "v",
        "type",
        "id",
        "tenant",
        "agent_group",
        "op",
        "user",
        "options",
        "iat",
        "exp",
        "kem",
    }
    h = env["header"]
    if "options_optional" in m and isinstance(h, dict) and "options" not in h:
        keys.discard("options")
    h = _exact(h, keys)
    if h["v"] != 1 or isinstance(h["v"], bool) or h["type"] != "request":
        raise Reject("malformed")
    _str(h["id"].lower() if "uuid_any_case" in m and isinstance(h["id"], str) else h["id"], UUID4)
    _str(h["tenant"], NAME)
    _str(h["agent_group"], NAME)
    if h["op"] not in OPS or h["kem"] not in KID_KIND:
        raise Reject("malformed")
    user = _exact(h["user"], {"kind", "value"})
    if user["kind"] not in ("login", "upn", "id"):
        raise Reject("malformed")
    value = _str(user["value"], re.compile(".*", re.S) if "no_printable_check" in m else PRINTABLE)
    if not 1 <= _length(value, m) <= 256:
        raise Reject("malformed")
    if "options" in h:
        opts = _exact(h["options"], {"unlock", "must_change"})
        if not all(isinstance(x, bool) for x in opts.values()):
            raise Reject("malformed")
    _int(h["iat"])
    _int(h["exp"])
    _sealed(h, env["sealed"], m)
    sig = _exact(env["sig"], {"kid", "alg", "value"})
    _str(sig["kid"], SIGN_KID)
    if sig["alg"] != "ed25519" or not isinstance(sig["value"], str):
        raise Reject("malformed")
    if "b64_errors_late" in m:
        return
    try:
        if len(b64(sig["value"], m)) != 64:
            raise Reject("malformed")
    except ValueError as exc:
        raise Reject("malformed") from exc


def check_version(doc: Any) -> None:
    h = doc.get("header") if isinstance(doc, dict) else None
    v = h.get("v") if isinstance(h, dict) else None
    if isinstance(v, int) and not isinstance(v, bool) and v != 1:
        raise Reject("unsupported_version")


# --- the verifier -------------------------------------------------------------------


STEPS = ["key", "retired", "signature", "tenant", "group", "lifetime", "iat", "exp", "recipient"]


def verify(raw: bytes, cfg: Settings) -> dict[str, Any] | None:
    """The opened secret part (None for ops without one); raises Reject."""
    m = cfg.mistakes
    if "parse_before_size" in m:
        parse(raw, m)
    if len(raw) > cfg.max_bytes or (len(raw) == cfg.max_bytes and "exclusive_max_bytes" in m):
        raise Reject("too_large")
    doc = parse(raw, m)
    if "version_after_schema" in m:
        schema(doc, m)
        check_version(doc)
    else:
        check_version(doc)
        schema(doc, m)
    h, sealed = doc["header"], doc["sealed"]
    try:
        payload = canonical({"header": h, "sealed": sealed}, m)
    except ValueError as exc:
        raise Reject("malformed") from exc
    checks = _checks(doc, payload, cfg)
    order = list(STEPS)
    for i in range(len(order) - 1):
        if f"swap_{order[i]}_{order[i + 1]}" in m:
            order[i], order[i + 1] = order[i + 1], order[i]
    want = OPS[h["op"]]
    for name in order:
        if name != "recipient" or want:  # ops without a secret stop before the recipient
            checks[name]()
    if not want:
        return None
    opened: dict[str, Any] = _open(h, sealed, cfg, want)
    return opened


def _checks(doc: dict[str, Any], payload: bytes, cfg: Settings) -> dict[str, Callable[[], None]]:
    """Steps 5-12 and 14 of section 6, each raising its reason."""
    m, h, sig, now = cfg.mistakes, doc["header"], doc["sig"], cfg.now
    nb, na = cfg.portal_not_before, cfg.portal_not_after

    def fail(reason: str, failed: bool) -> None:
        if failed:
            raise Reject(reason)

    def key() -> None:
        digest = base64.urlsafe_b64encode(hashlib.sha256(cfg.portal_key).digest()).decode()
        fail("unknown_key", sig["kid"] != "ed25519_" + digest[:22])
        early = nb is not None and (now < nb or (now == nb and "exclusive_not_before" in m))
        fail("unknown_key", early and "ignore_not_before" not in m)

    def signature() -> None:
        try:
            value = b64(sig["value"], m)
        except ValueError as exc:  # only with b64_errors_late: the schema checked it before
            raise Reject("bad_signature") from exc
        message = b"writeback-agent/request/v1\x00" + payload
        fail("bad_signature", not _signature_ok(cfg.portal_key, value, message, m))

    def same(a: str, b: str) -> bool:
        return a.lower() == b.lower() if "names_any_case" in m else a == b

    lifetime, skew = h["exp"] - h["iat"], cfg.max_skew
    return {
        "key": key,
        "retired": lambda: fail(
            "retired_key",
            na is not None and (now > na or (now == na and "exclusive_not_after" in m)),
        ),
        "signature": signature,
        "tenant": lambda: fail("wrong_tenant", not same(h["tenant"], cfg.tenant)),
        "group": lambda: fail("wrong_agent_group", not same(h["agent_group"], cfg.agent_group)),
        "lifetime": lambda: fail(
            "bad_lifetime",
            not 0 < lifetime <= cfg.max_lifetime
            or (lifetime == cfg.max_lifetime and "exclusive_lifetime" in m),
        ),
        "iat": lambda: fail(
            "not_yet_valid",
            h["iat"] > now + skew or (h["iat"] == now + skew and "exclusive_iat_skew" in m),
        ),
        "exp": lambda: fail(
            "expired",
            now > h["exp"] + skew or (now == h["exp"] + skew and "exclusive_exp_skew" in m),
        ),
        "recipient": lambda: fail("not_for_this_agent", not _entries(doc["sealed"], cfg)),
    }


def _entries(sealed: dict[str, str], cfg: Settings) -> list[str]:
    """Step 14: the entries this agent tries (exactly its own kid, when correct)."""
    m = cfg.mistakes
    if "any_sealed_entry" in m:
        return list(sealed.values())
    if "kid_hash_only" in m:
        tail = cfg.kem_kid.split("_", 1)[1]
        return [v for k, v in sealed.items() if k.split("_", 1)[1] == tail]
    return [sealed[cfg.kem_kid]] if cfg.kem_kid in sealed else []


def _open(h: dict[str, Any], sealed: dict[str, str], cfg: Settings, want: set[str]) -> Any:
    m = cfg.mistakes
    entries = _entries(sealed, cfg)
    kem = cfg.kem if "no_kid_prefix_check" in m else h["kem"]
    info = (
        b"writeback-agent/seal/v1\x00"
        + h["id"].encode("ascii")
        + b"\x00"
        + hashlib.sha256(canonical(h, m)).digest()
    )
    plaintext = None
    for entry in entries:
        try:
            plaintext = open_entry(kem, cfg.kem_private, b64(entry, m), info)
            break
        except Exception:  # noqa: BLE001, S112 - any failure to open is decrypt_failed
            continue
    if plaintext is None:
        raise Reject("decrypt_failed")
    if "secret_unvalidated" in m:
        return json.loads(plaintext)
    return _secret(plaintext, want, m)


def _secret(plaintext: bytes, want: set[str], m: set[str]) -> Any:
    """Section 4.3: strict JSON, canonical bytes, both members, per-op nulls, lengths."""
    secret = parse(plaintext, m)
    if "secret_noncanonical_accepted" not in m and canonical(secret, m) != plaintext:
        raise Reject("malformed")
    if "secret_members_unchecked" not in m:
        secret = _exact(secret, {"new_password", "old_password"})
    for name in ("new_password", "old_password"):
        value = secret.get(name)
        if "secret_ops_unchecked" not in m and (value is not None) != (name in want):
            raise Reject("malformed")
        if value is not None and not isinstance(value, str):
            raise Reject("malformed")
        lengths = "secret_lengths_unchecked" not in m
        if lengths and isinstance(value, str) and not 1 <= _length(value, m) <= 512:
            raise Reject("malformed")
    return {"new_password": secret.get("new_password"), "old_password": secret.get("old_password")}


def _signature_ok(public: bytes, signature: bytes, message: bytes, m: set[str]) -> bool:
    """Section 2.3, or one of the lenient variants the spec forbids."""
    if "lenient_ed25519" in m:
        return ed25519_math.verify_cofactored(public, signature, message)
    if len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= ed25519_math.L:
        if "ed25519_s_unreduced" not in m:
            return False
        s %= ed25519_math.L
    big_a = ed25519_math.decode_lenient(public)
    r = ed25519_math.decode_lenient(signature[:32])
    if big_a is None or r is None:
        return False
    k = ed25519_math.h512(signature[:32] + public + message) % ed25519_math.L
    lhs = ed25519_math.mul(s, ed25519_math.BASE)
    rhs = ed25519_math.add(r, ed25519_math.mul(k, big_a))
    if "ed25519_cofactored" in m:  # and R still a canonical encoding
        if ed25519_math.encode(r) != signature[:32]:
            return False
        lhs, rhs = ed25519_math.mul(8, lhs), ed25519_math.mul(8, rhs)
    if "ed25519_r_as_point" in m or "ed25519_cofactored" in m:
        return ed25519_math.encode(lhs) == ed25519_math.encode(rhs)
    # strict: the encoding of [S]B - [k]A must be the bytes of R
    neg_ka = ed25519_math.mul(ed25519_math.L - k, big_a) if k else ed25519_math.IDENTITY
    return ed25519_math.encode(ed25519_math.add(lhs, neg_ka)) == signature[:32]
