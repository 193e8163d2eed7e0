"""Canonical bytes: the one encoding that signatures and hashes are computed over.

Why our own serializer: ``json.dumps(sort_keys=True)`` sorts keys by code point, RFC
8785 (JCS) by UTF-16 code units; they differ for keys outside the BMP. We allow only
the JSON subset where JCS is simple (objects, arrays, strings, booleans, null and
integers within +-(2**53-1), never floats), and for that subset the output below is
byte-for-byte RFC 8785, so a portal in any language can use an off-the-shelf JCS
library. docs/protocol.md section 3 is the normative text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from wire.errors import EncodingError

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32

_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical UTF-8 JSON (RFC 8785 for our subset).

    Raises EncodingError for floats, non-string keys, unsafe integers, lone
    surrogates and nesting deeper than MAX_DEPTH.
    """
    try:
        if not _scan(value, 0):
            # No key outside the BMP: code point order is UTF-16 order, and json.dumps
            # writes strings, integers and literals exactly as _encode does (~2x faster).
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            return text.encode("utf-8")
        parts: list[str] = []
        _encode(value, parts, 0)
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError("string contains a lone surrogate") from exc


def _scan(value: Any, depth: int) -> bool:
    """Check what `_encode` would refuse; True when a key has a character outside the
    BMP (sorting by UTF-16 code units then differs from sorting by code points)."""
    if depth > MAX_DEPTH:
        raise EncodingError("nesting too deep")
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise EncodingError("integer outside +-(2**53-1)")
        return False
    if isinstance(value, dict):
        wide = False
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError("object key is not a string")
            if not key.isascii() and max(key) > "\uffff":
                wide = True
            wide = _scan(item, depth + 1) or wide
        return wide
    if isinstance(value, list | tuple):
        wide = False
        for item in value:
            wide = _scan(item, depth + 1) or wide
        return wide
    # floats included: their JSON form is not portable across languages.
    raise EncodingError(f"type {type(value).__name__} has no canonical form")


def _encode(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodingError("nesting too deep")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise EncodingError("integer outside +-(2**53-1)")
        out.append(str(int(value)))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(k, str) for k in keys):
            raise EncodingError("object key is not a string")
        keys.sort(key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        # floats included: their JSON form is not portable across languages.
        raise EncodingError(f"type {type(value).__name__} has no canonical form")


def parse_json(raw: bytes) -> Any:
    """Parse strict JSON: UTF-8 without BOM, no duplicate keys, no NaN/Infinity, numbers
    only as integers in +-(2**53-1) written without fraction, exponent or ``-0``, no
    lone surrogates, nesting at most MAX_DEPTH.

    Why strict: a relay that adds a duplicate key must not make two parsers (ours and
    the portal's) see two different messages, and ``1.0``, ``1e0`` or ``-0`` are the
    integers 1 and 0 to a JavaScript parser but floats or signed zero to others.
    Raises ValueError on any problem.
    """
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("byte order mark")
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_no_float,
            parse_int=_integer,
        )
        # Lone surrogates and nesting deeper than MAX_DEPTH: refused here, at parse
        # time, not later where they would surface as a failed signature.
        canonical_json(doc)
        return doc
    except RecursionError as exc:
        raise ValueError("nesting too deep") from exc
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(type(exc).__name__) from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate object key")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_float(_literal: str) -> Any:
    raise ValueError("number with a fraction or exponent")


def _integer(literal: str) -> int:
    if literal == "-0":
        raise ValueError("-0 is not an integer form of this protocol")
    value = int(literal)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise ValueError("integer outside +-(2**53-1)")
    return value


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of b64url_encode: no padding, no other alphabet, canonical bits.

    Why canonical: two spellings of the same bytes would give a relay room to alter a
    signed message without changing what it decodes to.
    """
    if not _B64URL_RE.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_b64(data: bytes) -> str:
    """The hash form used on the wire (request_hash): base64url(sha256(data))."""
    return b64url_encode(sha256(data))
