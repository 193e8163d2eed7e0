"""Bounds on every JSON body the relay stores and serves back.

Why: whatever the relay stores, it hands to someone else later (public keys to every
portal of the tenant, envelopes to agents, results to portals, heartbeats to
operators). A record that is too deep, too wide or not finite breaks the reader, not
the writer: an agent that registered ~256 nested levels of "public keys" used to make
the whole group's agent list answer 500. So a body is refused when it arrives, with
the path of the offending value, and a record that somehow got stored anyway is
skipped when served (`within`), never allowed to fail a whole listing.

Limits: depth, items per object or array, string length, total size; numbers must be
finite (JSON has no NaN; Python's parser accepts it, and 1e999 becomes infinity).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class BoundsError(ValueError):
    """A JSON value outside its limits; `path` names where (e.g. ``header.exp``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or '(body)'}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_items: int
    max_string: int
    max_bytes: int


# An agent's public record: {sign_kid, sign_key, kem, kem_kid, kem_key, ...}; an
# ML-KEM-768+X25519 key is 1,622 base64url characters.
PUBLIC_KEYS = Limits(max_depth=4, max_items=32, max_string=4096, max_bytes=16 * 1024)
# Envelopes and results: the wire contract itself allows depth 32 (canonical JSON).
ENVELOPE = Limits(max_depth=32, max_items=1024, max_string=64 * 1024, max_bytes=1 << 20)


def parse(raw: bytes | str, limits: Limits) -> Any:
    """Strict JSON within `limits`. Raises BoundsError naming the field."""
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > limits.max_bytes:
        raise BoundsError("", f"{size} bytes, limit {limits.max_bytes}")
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise BoundsError("", f"nested deeper than {limits.max_depth}") from None
    except UnicodeDecodeError:
        raise BoundsError("", "not UTF-8") from None
    except ValueError as exc:
        raise BoundsError("", f"not JSON ({exc})") from None
    check(value, limits)
    return value


def check(value: Any, limits: Limits) -> None:
    """Walk an already parsed value (iteratively: depth is what we are checking)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limits.max_depth:
                raise BoundsError(path, f"nested deeper than {limits.max_depth}")
            if len(item) > limits.max_items:
                raise BoundsError(path, f"more than {limits.max_items} items")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and len(key) > limits.max_string:
                    raise BoundsError(path, f"key longer than {limits.max_string}")
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, float) and not math.isfinite(item):
            raise BoundsError(path, "not a finite number")
        elif isinstance(item, str) and len(item) > limits.max_string:
            raise BoundsError(path, f"longer than {limits.max_string} characters")
        elif item is not None and not isinstance(item, bool | int | float | str):
            raise BoundsError(path, f"{type(item).__name__} is not JSON")


def within(value: Any, limits: Limits) -> bool:
    try:
        check(value, limits)
    except BoundsError:
        return False
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate object key")
    return result
