"""Does the service account hold an extended right on an object? Answered by reading,
never by trying a write.

Attribute write rights are easy to verify: the DC computes them for the bound
identity in `allowedAttributesEffective`. Extended rights (Reset Password) have no
such attribute, so we read the object's DACL (nTSecurityDescriptor with the SD flags
control asking for the DACL only, which any reader with READ_CONTROL gets) and
evaluate it against the caller's own SIDs from the rootDSE `tokenGroups`, the way the
DC does: ACEs in order, inherit-only ones skipped, the first ACE that allows or
denies the right decides.

A parser of the self-relative SECURITY_DESCRIPTOR layout (MS-DTYP 2.4.6) of just what
that needs; anything it does not understand is skipped, which can only make the
check report a right as missing, never invent one.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

RESET_PASSWORD = uuid.UUID("00299570-246d-11d0-a768-00aa006e0529")
USER_CLASS = uuid.UUID("bf967aba-0de6-11d0-a285-00aa003049e2")

_ALLOWED, _DENIED, _ALLOWED_OBJECT, _DENIED_OBJECT = 0x00, 0x01, 0x05, 0x06
_CONTAINER_INHERIT = 0x02
_INHERIT_ONLY = 0x08
_OBJECT_TYPE_PRESENT = 0x1
_INHERITED_OBJECT_TYPE_PRESENT = 0x2
CONTROL_ACCESS = 0x100
GENERIC_ALL = 0x10000000
GENERIC_WRITE = 0x40000000
WRITE_PROPERTY = 0x20


@dataclass(frozen=True)
class Ace:
    allow: bool
    flags: int
    mask: int
    sid: str
    object_type: uuid.UUID | None
    inherited_object_type: uuid.UUID | None = None


def sid_to_str(data: bytes) -> str:
    """Binary SID -> S-1-5-21-... (MS-DTYP 2.4.2.2)."""
    revision, count = data[0], data[1]
    authority = int.from_bytes(data[2:8], "big")
    subs = struct.unpack_from(f"<{count}I", data, 8)
    return "-".join(["S", str(revision), str(authority), *map(str, subs)])


def _sid_len(data: bytes, offset: int) -> int:
    return 8 + 4 * data[offset + 1]


def parse_dacl(sd: bytes) -> list[Ace]:
    """The DACL's ACEs of a self-relative security descriptor ([] if none)."""
    if len(sd) < 20:
        return []
    dacl_offset = struct.unpack_from("<I", sd, 16)[0]
    if dacl_offset == 0 or dacl_offset + 8 > len(sd):
        return []
    count = struct.unpack_from("<H", sd, dacl_offset + 4)[0]
    aces: list[Ace] = []
    pos = dacl_offset + 8
    for _ in range(count):
        if pos + 4 > len(sd):
            break
        ace_type, ace_flags, ace_size = struct.unpack_from("<BBH", sd, pos)
        body = pos + 4
        if ace_type in (_ALLOWED, _DENIED):
            mask = struct.unpack_from("<I", sd, body)[0]
            sid_at = body + 4
            aces.append(
                Ace(
                    ace_type == _ALLOWED,
                    ace_flags,
                    mask,
                    sid_to_str(sd[sid_at : sid_at + _sid_len(sd, sid_at)]),
                    None,
                )
            )
        elif ace_type in (_ALLOWED_OBJECT, _DENIED_OBJECT):
            mask, obj_flags = struct.unpack_from("<II", sd, body)
            cursor = body + 8
            object_type = inherited = None
            if obj_flags & _OBJECT_TYPE_PRESENT:
                object_type = uuid.UUID(bytes_le=sd[cursor : cursor + 16])
                cursor += 16
            if obj_flags & _INHERITED_OBJECT_TYPE_PRESENT:
                inherited = uuid.UUID(bytes_le=sd[cursor : cursor + 16])
                cursor += 16
            aces.append(
                Ace(
                    ace_type == _ALLOWED_OBJECT,
                    ace_flags,
                    mask,
                    sid_to_str(sd[cursor : cursor + _sid_len(sd, cursor)]),
                    object_type,
                    inherited,
                )
            )
        # other ACE types (audit, callback, ...) do not grant DS rights: skipped
        pos += ace_size
    return aces


def has_extended_right(sd: bytes, token_sids: set[str], right: uuid.UUID) -> bool:
    """True when the DACL grants `right` (control access) to one of `token_sids`."""
    for ace in parse_dacl(sd):
        if ace.flags & _INHERIT_ONLY or ace.sid not in token_sids:
            continue
        if not ace.mask & (CONTROL_ACCESS | GENERIC_ALL):
            continue
        if ace.object_type is not None and ace.object_type != right:
            continue
        return ace.allow
    return False


def grants_to_children(
    sd: bytes,
    token_sids: set[str],
    *,
    access: int,
    object_types: set[uuid.UUID],
    child_class: uuid.UUID = USER_CLASS,
) -> bool:
    """Would the ACEs a container passes down to its `child_class` objects grant
    `access` (CONTROL_ACCESS for an extended right, WRITE_PROPERTY for an attribute)
    on one of `object_types` (the right, or the attribute and its property set)?

    This is what "delegated on the OU" means: the verdict for every user below the
    container, not for whichever user a search returns first. Inheritable ACEs only
    (container-inherit), for that class or for all classes; the first ACE that matches
    decides, as the DC evaluates the child's DACL (the container's order is kept).
    """
    generic = GENERIC_ALL | (GENERIC_WRITE if access == WRITE_PROPERTY else 0)
    for ace in parse_dacl(sd):
        if not ace.flags & _CONTAINER_INHERIT or ace.sid not in token_sids:
            continue
        if ace.inherited_object_type not in (None, child_class):
            continue
        if not ace.mask & (access | generic):
            continue
        if ace.object_type is not None and ace.object_type not in object_types:
            continue
        return ace.allow
    return False
