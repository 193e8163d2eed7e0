"""BER for the three LDAP requests on the reset path (RFC 4511), byte for byte as ldap3
2.9.1 sends them, without building pyasn1 objects.

ldap3 builds every request as a tree of pyasn1 objects, encodes it with pyasn1's BER
encoder and then decodes the tree back into a dict (`connection.request`): about a
third of the agent's CPU per reset on slapd (bench/bench_e2e.py, py-spy). Here the
same bytes are written directly. What goes INTO the bytes is still computed by ldap3's
own functions (connectors/_ldap_send.py: `parse_filter` and its escaping/stripping
rules, `validate_attribute_value`, `validate_simple_password`, `safe_dn`), so only the
encoding changes; tests/unit/connectors/test_ber.py compares the output with
ldap3 + pyasn1's for each request shape, including hostile and non-ASCII values and
every length form.

Encoding rules pyasn1's BER encoder follows (and so we do): definite lengths in the
shortest form, INTEGER/ENUMERATED in the fewest two's-complement octets, BOOLEAN TRUE
as 0xFF, a DEFAULT component equal to its default omitted (a
control's criticality FALSE, extensibleMatch's dnAttributes FALSE).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# Universal tags.
_BOOLEAN, _INTEGER, _OCTETS, _ENUMERATED, _SEQUENCE, _SET = 0x01, 0x02, 0x04, 0x0A, 0x30, 0x31
# [APPLICATION n] constructed: SearchRequest 3, ModifyRequest 6, ExtendedRequest 23.
_SEARCH, _MODIFY, _EXTENDED = 0x63, 0x66, 0x77
_CONTROLS = 0xA0  # LDAPMessage controls [0]

# ldap3's FilterNode tags (ldap3.operation.search) -> the Filter CHOICE's context tag.
AND, OR, NOT = 1, 2, 3
MATCH_APPROX, MATCH_GE, MATCH_LE, MATCH_EXTENSIBLE = 4, 5, 6, 7
MATCH_PRESENT, MATCH_SUBSTRING, MATCH_EQUAL = 8, 9, 10
_FILTER_TAG = {
    AND: 0xA0,
    OR: 0xA1,
    NOT: 0xA2,
    MATCH_EQUAL: 0xA3,
    MATCH_SUBSTRING: 0xA4,
    MATCH_GE: 0xA5,
    MATCH_LE: 0xA6,
    MATCH_PRESENT: 0x87,  # primitive: the AttributeDescription itself
    MATCH_APPROX: 0xA8,
    MATCH_EXTENSIBLE: 0xA9,
}

Control = tuple[str, bool, bytes | None]  # (oid, criticality, BER value) as ldap3 takes them


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def integer(value: int, tag: int = _INTEGER) -> bytes:
    return tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def octets(value: bytes | str, tag: int = _OCTETS) -> bytes:
    """An OCTET STRING; str as UTF-8 (ldap3's LDAPString and its to_raw)."""
    return tlv(tag, value.encode("utf-8") if isinstance(value, str) else value)


def boolean(value: bool) -> bytes:
    return b"\x01\x01\xff" if value else b"\x01\x01\x00"


def _controls(controls: Sequence[Control] | None) -> bytes:
    if not controls:
        return b""
    parts = []
    for oid, critical, value in controls:
        body = octets(oid)
        if critical:  # DEFAULT FALSE: omitted when false
            body += boolean(True)
        if value is not None:
            body += octets(value)
        parts.append(tlv(_SEQUENCE, body))
    return tlv(_CONTROLS, b"".join(parts))


def message(message_id: int, protocol_op: bytes, controls: Sequence[Control] | None) -> bytes:
    """LDAPMessage ::= SEQUENCE { messageID, protocolOp, controls [0] OPTIONAL }."""
    return tlv(_SEQUENCE, integer(message_id) + protocol_op + _controls(controls))


# ---------------------------------------------------------------------------- filter


def _assertion(attr: str, value: bytes) -> bytes:
    return octets(attr) + octets(value)


def filter_bytes(node: Any, value: Any) -> bytes:
    """One ldap3 FilterNode (parse_filter's tree, values still ldap3-escaped) as a
    Filter; `value` is ldap3's prepare_filter_for_sending (the \\XX unescaping)."""
    tag = node.tag
    a = node.assertion
    if tag in (AND, OR):
        body = b"".join(filter_bytes(child, value) for child in node.elements)
    elif tag == NOT:
        body = filter_bytes(node.elements[0], value)
    elif tag == MATCH_PRESENT:
        return octets(a["attr"], _FILTER_TAG[tag])
    elif tag == MATCH_SUBSTRING:
        subs = []
        if a.get("initial"):
            subs.append(octets(value(a["initial"]), 0x80))
        for part in a.get("any") or ():
            subs.append(octets(value(part), 0x81))
        if a.get("final"):
            subs.append(octets(value(a["final"]), 0x82))
        body = octets(a["attr"]) + tlv(_SEQUENCE, b"".join(subs))
    elif tag == MATCH_EXTENSIBLE:
        body = b""
        if a["matchingRule"]:
            body += octets(a["matchingRule"], 0x81)
        if a["attr"]:
            body += octets(a["attr"], 0x82)
        body += octets(value(a["value"]), 0x83)
        if a["dnAttributes"]:  # DEFAULT FALSE
            body += tlv(0x84, b"\xff")
    elif tag in (MATCH_EQUAL, MATCH_GE, MATCH_LE, MATCH_APPROX):
        body = _assertion(a["attr"], value(a["value"]))
    else:
        raise ValueError(f"unknown filter node tag {tag!r}")
    return tlv(_FILTER_TAG[tag], body)


# ---------------------------------------------------------------------------- requests


def search_request(
    base: str,
    filter_ber: bytes,
    attributes: Iterable[str],
    *,
    scope: int,
    deref: int,
    size_limit: int = 0,
    time_limit: int = 0,
    types_only: bool = False,
) -> bytes:
    return tlv(
        _SEARCH,
        octets(base)
        + integer(scope, _ENUMERATED)
        + integer(deref, _ENUMERATED)
        + integer(size_limit)
        + integer(time_limit)
        + boolean(types_only)
        + filter_ber
        + tlv(_SEQUENCE, b"".join(octets(a) for a in attributes)),
    )


def modify_request(dn: str, changes: Iterable[tuple[str, int, Iterable[bytes]]]) -> bytes:
    """changes: (attribute, operation 0-3, values already prepared for sending)."""
    body = b"".join(
        tlv(
            _SEQUENCE,
            integer(operation, _ENUMERATED)
            + tlv(_SEQUENCE, octets(attr) + tlv(_SET, b"".join(octets(v) for v in values))),
        )
        for attr, operation, values in changes
    )
    return tlv(_MODIFY, octets(dn) + tlv(_SEQUENCE, body))


def extended_request(name: str, value: bytes | None) -> bytes:
    body = octets(name, 0x80)
    if value is not None:
        body += octets(value, 0x81)
    return tlv(_EXTENDED, body)


def passwd_modify_value(user: str | None, old: bytes | None, new: bytes | None) -> bytes:
    """RFC 3062 PasswdModifyRequestValue; absent parts are left out, as ldap3 does for
    empty ones."""
    body = b""
    if user:
        body += octets(user, 0x80)
    if old:
        body += octets(old, 0x81)
    if new:
        body += octets(new, 0x82)
    return tlv(_SEQUENCE, body)
