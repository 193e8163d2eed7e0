"""A second request verifier, written from docs/protocol.md alone (no wire.verify, no
pydantic models, no cryptography HPKE), with switches that each make it commit one
mistake an outside implementer could make. With no switch on it must agree with every
vector; with any one switch on, some vector must catch it (test_mutations.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import ed25519_math
from .independent_hpke import open_entry

MISTAKES = {
    "no_duplicate_key_check": "last duplicate object member wins",
    "plain_json": "BOM stripped, invalid UTF-8 replaced, 1.0/1e0/-0 read as integers",
    "uppercase_u_hex": "canonical encoder writes \\u001F",
    "no_short_escapes": "canonical encoder writes \\u0008 for \\b, \\f, \\r",
    "lenient_base64url": "padding and non-zero trailing bits accepted",
    "ignore_not_before": "portal key used before its not_before",
    "secret_unvalidated": "decrypted secret part read without validation",
    "no_kid_prefix_check": "suite taken from the agent key, kid prefix not compared to kem",
    "kid_hash_only": "sealed entry found by the part of the kid after the prefix",
    "any_sealed_entry": "every sealed entry tried with the agent key, kid ignored",
    "no_op_sealed_check": "sealed not checked against op",
    "version_after_schema": "header.v checked after the schema",
    "lenient_ed25519": "ZIP-215 style: cofactored equation, S not range-checked",
    "lenient_ed25519_keys": "public keys not checked for encoding and small order",
    "options_optional": "header.options may be left out",
    "utf16_lengths": "lengths counted in UTF-16 code units",
}

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z")
KEM_KID = re.compile(r"^(x25519|mlkem768x25519)_[A-Za-z0-9_-]{22}\Z")
SIGN_KID = re.compile(r"^ed25519_[A-Za-z0-9_-]{22}\Z")
B64 = re.compile(r"^[A-Za-z0-9_-]+\Z")
PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*\Z")
OPS = {"reset": {"new_password"}, "change": {"new_password", "old_password"},
       "authenticate": {"old_password"}, "unlock": set(), "preflight": set()}  # fmt: skip
KID_KIND = {"x25519": "x25519", "mlkem768-x25519": "mlkem768x25519"}
MAX_INT = 2**53 - 1


class Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


# --- canonical JSON -----------------------------------------------------------------


def encode(value: Any, mistakes: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ValueError("unsafe integer")
        return str(value)
    if isinstance(value, str):
        return _string(value, mistakes)
    if isinstance(value, list):
        return "[" + ",".join(encode(v, mistakes) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return (
            "{"
            + ",".join(_string(k, mistakes) + ":" + encode(value[k], mistakes) for k in keys)
            + "}"
        )
    raise ValueError("no canonical form")


def _string(s: str, mistakes: set[str]) -> str:
    short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}
    if "no_short_escapes" not in mistakes:
        short.update({"\b": "\\b", "\f": "\\f", "\r": "\\r"})
    out = []
    for ch in s:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError("lone surrogate")
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20:
            hex4 = f"{ord(ch):04X}" if "uppercase_u_hex" in mistakes else f"{ord(ch):04x}"
            out.append("\\u" + hex4)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def canonical(value: Any, mistakes: set[str]) -> bytes:
    return encode(value, mistakes).encode("utf-8")


# --- strict parse -------------------------------------------------------------------


def parse(raw: bytes, mistakes: set[str]) -> Any:
    plain = "plain_json" in mistakes

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if "no_duplicate_key_check" not in mistakes and len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate")
        return dict(items)

    def number(literal: str) -> Any:
        if plain:
            f = float(literal)
            return int(f) if f.is_integer() else f
        raise ValueError("fraction or exponent")

    def integer(literal: str) -> int:
        if literal == "-0" and not plain:
            raise ValueError("-0")
        v = int(literal)
        if abs(v) > MAX_INT:
            raise ValueError("unsafe integer")
        return v

    def constant(_name: str) -> Any:
        raise ValueError("constant")

    try:
        text = raw.decode("utf-8-sig", errors="replace") if plain else raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("BOM")
        return json.loads(
            text, object_pairs_hook=pairs, parse_float=number, parse_int=integer,
            parse_constant=constant,
        )  # fmt: skip
    except (ValueError, RecursionError) as exc:
        raise Reject("malformed") from exc


def b64(text: str, mistakes: set[str]) -> bytes:
    if "lenient_base64url" in mistakes:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    if not B64.match(text) or len(text) % 4 == 1:
        raise ValueError("alphabet")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != text:
        raise ValueError("non-canonical")
    return data


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
    return len(s.encode("utf-16-le")) // 2 if "utf16_lengths" in mistakes else len(s)


def _str(v: Any, pattern: re.Pattern[str]) -> str:
    if not isinstance(v, str) or not pattern.match(v):
        raise Reject("malformed")
    return v


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
    _str(h["id"], UUID4)
    _str(h["tenant"], NAME)
    _str(h["agent_group"], NAME)
    if h["op"] not in OPS or h["kem"] not in KID_KIND:
        raise Reject("malformed")
    user = _exact(h["user"], {"kind", "value"})
    if user["kind"] not in ("login", "upn", "id"):
        raise Reject("malformed")
    value = _str(user["value"], PRINTABLE)
    if not 1 <= _length(value, m) <= 256:
        raise Reject("malformed")
    if "options" in h:
        opts = _exact(h["options"], {"unlock", "must_change"})
        if not all(isinstance(x, bool) for x in opts.values()):
            raise Reject("malformed")
    _int(h["iat"])
    _int(h["exp"])
    sealed = env["sealed"]
    if not isinstance(sealed, dict) or len(sealed) > 64:
        raise Reject("malformed")
    for kid, entry in sealed.items():
        _str(kid, KEM_KID)
        if not isinstance(entry, str) or not 1 <= len(entry) <= 10240:
            raise Reject("malformed")
        if "lenient_base64url" not in m:
            _str(entry, B64)
        try:
            b64(entry, m)
        except (ValueError, binascii.Error) as exc:
            raise Reject("malformed") from exc
        if "no_kid_prefix_check" not in m and not kid.startswith(KID_KIND[h["kem"]] + "_"):
            raise Reject("malformed")
    if "no_op_sealed_check" not in m and bool(sealed) != bool(OPS[h["op"]]):
        raise Reject("malformed")
    sig = _exact(env["sig"], {"kid", "alg", "value"})
    _str(sig["kid"], SIGN_KID)
    if sig["alg"] != "ed25519" or not isinstance(sig["value"], str):
        raise Reject("malformed")
    try:
        if len(b64(sig["value"], m)) != 64:
            raise Reject("malformed")
    except (ValueError, binascii.Error) as exc:
        raise Reject("malformed") from exc


def check_version(doc: Any) -> None:
    h = doc.get("header") if isinstance(doc, dict) else None
    v = h.get("v") if isinstance(h, dict) else None
    if isinstance(v, int) and not isinstance(v, bool) and v != 1:
        raise Reject("unsupported_version")


# --- the verifier -------------------------------------------------------------------


def verify(raw: bytes, cfg: Settings) -> dict[str, Any] | None:
    """The opened secret part (None for ops without one); raises Reject."""
    m = cfg.mistakes
    if len(raw) > cfg.max_bytes:
        raise Reject("too_large")
    doc = parse(raw, m)
    if "version_after_schema" in m:
        schema(doc, m)
        check_version(doc)
    else:
        check_version(doc)
        schema(doc, m)
    h, sealed, sig = doc["header"], doc["sealed"], doc["sig"]
    try:
        payload = canonical({"header": h, "sealed": sealed}, m)
    except ValueError as exc:
        raise Reject("malformed") from exc
    # keyring
    portal_kid = (
        "ed25519_" + base64.urlsafe_b64encode(hashlib.sha256(cfg.portal_key).digest()).decode()[:22]
    )
    if sig["kid"] != portal_kid:
        raise Reject("unknown_key")
    nb, na = cfg.portal_not_before, cfg.portal_not_after
    if nb is not None and cfg.now < nb and "ignore_not_before" not in m:
        raise Reject("unknown_key")
    if na is not None and cfg.now > na:
        raise Reject("retired_key")
    message = b"writeback-agent/request/v1\x00" + payload
    signature = b64(sig["value"], m)
    if "lenient_ed25519" in m:
        ok = ed25519_math.verify_cofactored(cfg.portal_key, signature, message)
    else:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(cfg.portal_key).verify(signature, message)
            ok = True
        except InvalidSignature:
            ok = False
    if not ok:
        raise Reject("bad_signature")
    if h["tenant"] != cfg.tenant:
        raise Reject("wrong_tenant")
    if h["agent_group"] != cfg.agent_group:
        raise Reject("wrong_agent_group")
    if not 0 < h["exp"] - h["iat"] <= cfg.max_lifetime:
        raise Reject("bad_lifetime")
    if h["iat"] > cfg.now + cfg.max_skew:
        raise Reject("not_yet_valid")
    if cfg.now > h["exp"] + cfg.max_skew:
        raise Reject("expired")
    want = OPS[h["op"]]
    if not want:  # nothing to open (a lenient verifier ignores a stray sealed entry)
        return None
    opened: dict[str, Any] = _open(h, sealed, cfg, want)
    return opened


def _open(h: dict[str, Any], sealed: dict[str, str], cfg: Settings, want: set[str]) -> Any:
    m = cfg.mistakes
    if "any_sealed_entry" in m:
        entries = list(sealed.values())
    elif "kid_hash_only" in m:
        tail = cfg.kem_kid.split("_", 1)[1]
        entries = [v for k, v in sealed.items() if k.split("_", 1)[1] == tail]
    else:
        entries = [sealed[cfg.kem_kid]] if cfg.kem_kid in sealed else []
    if not entries:
        if not want:
            return None
        raise Reject("not_for_this_agent")
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
    secret = parse(plaintext, m)
    if canonical(secret, m) != plaintext:
        raise Reject("malformed")
    secret = _exact(secret, {"new_password", "old_password"})
    for name, value in secret.items():
        if (value is not None) != (name in want):
            raise Reject("malformed")
        if value is not None and (not isinstance(value, str) or not 1 <= _length(value, m) <= 512):
            raise Reject("malformed")
    return secret
