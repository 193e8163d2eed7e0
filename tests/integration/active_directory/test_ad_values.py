"""The pure AD value conversions and the DACL evaluation (no server needed).

They live beside the AD integration tests because they pin down the same formats the
Samba fixture produces: FILETIMEs, negative intervals with "never" sentinels, SIDs,
and object ACEs.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid

from connectors._ad_policy import (
    filetime_to_datetime,
    interval_to_timedelta,
    policy_from_domain,
    policy_from_pso,
)
from connectors._ad_rights import RESET_PASSWORD, has_extended_right, sid_to_str

SVC = "S-1-5-21-1-2-3-1103"
OTHER = "S-1-5-21-1-2-3-1104"


def test_filetime() -> None:
    assert filetime_to_datetime("0") is None  # must change
    assert filetime_to_datetime(None) is None
    assert filetime_to_datetime(str(2**63 - 1)) is None
    # 2020-01-01T00:00:00Z
    assert filetime_to_datetime(132223104000000000) == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def test_intervals_and_policies() -> None:
    assert interval_to_timedelta(str(-(2**63))) is None
    assert interval_to_timedelta("-864000000000") == dt.timedelta(days=1)
    domain = policy_from_domain({
        "minPwdLength": ["8"], "pwdProperties": ["1"], "pwdHistoryLength": ["3"],
        "minPwdAge": ["0"], "maxPwdAge": [str(-(2**63))], "lockoutThreshold": ["3"],
    })
    assert (domain.min_length, domain.complexity, domain.history_length) == (8, True, 3)
    assert domain.max_age is None and domain.min_age == dt.timedelta(0)
    pso = policy_from_pso("CN=p", {
        "msDS-MinimumPasswordLength": ["12"], "msDS-PasswordComplexityEnabled": ["FALSE"],
        "msDS-MinimumPasswordAge": ["-864000000000"], "msDS-MaximumPasswordAge": ["0"],
    })
    assert (pso.min_length, pso.complexity, pso.source) == (12, False, "CN=p")
    assert pso.min_age == dt.timedelta(days=1) and pso.max_age is None


def _sid(text: str) -> bytes:
    parts = text.split("-")
    subs = [int(p) for p in parts[3:]]
    authority = int(parts[2]).to_bytes(6, "big")
    return bytes([1, len(subs)]) + authority + struct.pack(f"<{len(subs)}I", *subs)


def _object_ace(allow: bool, flags: int, mask: int, guid: uuid.UUID | None, sid: str) -> bytes:
    body = struct.pack("<II", mask, 1 if guid else 0) + (guid.bytes_le if guid else b"") + _sid(sid)
    return struct.pack("<BBH", 5 if allow else 6, flags, 4 + len(body)) + body


def _sd(*aces: bytes) -> bytes:
    acl_body = b"".join(aces)
    acl = struct.pack("<BBHHH", 4, 0, 8 + len(acl_body), len(aces), 0) + acl_body
    return struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20) + acl


def test_sid_to_str_round_trip() -> None:
    assert sid_to_str(_sid(SVC)) == SVC


def test_reset_password_right_evaluation() -> None:
    grant = _object_ace(True, 0x10, 0x100, RESET_PASSWORD, SVC)  # inherited allow
    assert has_extended_right(_sd(grant), {SVC}, RESET_PASSWORD)
    assert not has_extended_right(_sd(grant), {OTHER}, RESET_PASSWORD)
    deny = _object_ace(False, 0, 0x100, RESET_PASSWORD, SVC)
    assert not has_extended_right(_sd(deny, grant), {SVC}, RESET_PASSWORD)  # deny first wins
    inherit_only = _object_ace(True, 0x0A, 0x100, RESET_PASSWORD, SVC)
    assert not has_extended_right(_sd(inherit_only), {SVC}, RESET_PASSWORD)
    other_right = _object_ace(True, 0, 0x100, uuid.uuid4(), SVC)
    assert not has_extended_right(_sd(other_right), {SVC}, RESET_PASSWORD)
    all_rights = _object_ace(True, 0, 0x100, None, SVC)  # CR on every extended right
    assert has_extended_right(_sd(all_rights), {SVC}, RESET_PASSWORD)
    assert not has_extended_right(b"", {SVC}, RESET_PASSWORD)
