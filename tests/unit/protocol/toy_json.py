"""Strict JSON, canonical JSON and base64url written from docs/protocol.md sections 1,
3.1 and 3.2 alone, for the toy verifier; each mistake switch is one way an outside
implementer could get them wrong (toy_verifier.MISTAKES lists them all).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

MAX_INT = 2**53 - 1
MAX_DEPTH = 32
B64 = re.compile(r"^[A-Za-z0-9_-]+\Z")


class Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        if "codepoint_key_order" in mistakes:
            keys = sorted(value)
        else:
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
    if "escaped_solidus" in mistakes:
        short["/"] = "\\/"
    out = []
    for ch in s:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError("lone surrogate")
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20 or (ord(ch) == 0x7F and "escaped_del" in mistakes):
            hex4 = f"{ord(ch):04X}" if "uppercase_u_hex" in mistakes else f"{ord(ch):04x}"
            out.append("\\u" + hex4)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def canonical(value: Any, mistakes: set[str]) -> bytes:
    return encode(value, mistakes).encode("utf-8")


# --- strict parse -------------------------------------------------------------------


def _check_tree(value: Any, enclosing: int, mistakes: set[str]) -> None:
    """Section 3.1: no value inside more than 32 arrays and objects; no lone surrogate."""
    if enclosing > MAX_DEPTH and "no_depth_limit" not in mistakes:
        raise ValueError("nesting")
    if isinstance(value, str):
        if "lone_surrogate_accepted" not in mistakes and any(
            0xD800 <= ord(ch) <= 0xDFFF for ch in value
        ):
            raise ValueError("lone surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_tree(key, enclosing + 1, mistakes)
            _check_tree(item, enclosing + 1, mistakes)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, enclosing + 1, mistakes)


def parse(raw: bytes, mistakes: set[str]) -> Any:
    m = mistakes

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if "no_duplicate_key_check" not in m and len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate")
        return dict(items)

    def number(literal: str) -> Any:
        exponent = "e" in literal.lower()
        if ("exponent_as_integer" in m and exponent) or (
            "fraction_as_integer" in m and not exponent
        ):
            f = float(literal)
            return int(f) if f.is_integer() else f
        raise ValueError("fraction or exponent")

    def integer(literal: str) -> int:
        if literal == "-0" and "minus_zero_accepted" not in m:
            raise ValueError("-0")
        v = int(literal)
        if abs(v) > MAX_INT:
            raise ValueError("unsafe integer")
        return v

    def constant(_name: str) -> Any:
        raise ValueError("constant")

    try:
        if "invalid_utf8_replaced" in m:
            text = raw.decode("utf-8", errors="replace")
        else:
            text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            if "bom_accepted" not in m:
                raise ValueError("BOM")
            text = text[1:]
        value = json.loads(
            text, object_pairs_hook=pairs, parse_float=number, parse_int=integer,
            parse_constant=constant,
        )  # fmt: skip
        _check_tree(value, 0, m)
    except (ValueError, RecursionError) as exc:
        raise Reject("malformed") from exc
    return value


def b64(text: str, mistakes: set[str]) -> bytes:
    """Strict base64url (section 1); raises ValueError."""
    if "b64_padding_accepted" in mistakes:
        text = text.rstrip("=")
    if not B64.match(text) or len(text) % 4 == 1:
        raise ValueError("alphabet")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if (
        "b64_trailing_bits_accepted" not in mistakes
        and base64.urlsafe_b64encode(data).rstrip(b"=").decode() != text
    ):
        raise ValueError("non-canonical")
    return data
