"""Active Directory value formats: FILETIME timestamps, negative 100-ns intervals, and
the effective password policy from the domain head or a fine-grained PSO.

Kept apart from the connector because these conversions are pure and easy to get
wrong (sign, epoch, the "never" sentinels), so they deserve unit tests of their own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from connectors._ldap import first_value
from connectors.base import PasswordPolicy

_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
# maxPwdAge / lockoutDuration use the most negative int64 (or 0) for "never".
_NEVER = -(2**63)

DOMAIN_POLICY_ATTRS = [
    "minPwdLength",
    "pwdProperties",
    "pwdHistoryLength",
    "minPwdAge",
    "maxPwdAge",
    "lockoutThreshold",
    "lockoutDuration",
]
PSO_POLICY_ATTRS = [
    "msDS-MinimumPasswordLength",
    "msDS-PasswordComplexityEnabled",
    "msDS-PasswordHistoryLength",
    "msDS-MinimumPasswordAge",
    "msDS-MaximumPasswordAge",
    "msDS-LockoutThreshold",
    "msDS-LockoutDuration",
]
DOMAIN_PASSWORD_COMPLEX = 0x1  # pwdProperties bit


def _int(attrs: dict[str, Any], name: str, default: int = 0) -> int:
    value = first_value(attrs, name)
    if value is None or value == "":
        return default
    return int(value)


def filetime_to_datetime(value: int | str | None) -> dt.datetime | None:
    """pwdLastSet / lockoutTime: 100-ns ticks since 1601 (UTC). 0 (and absent) -> None."""
    if value is None or value == "":
        return None
    ticks = int(value)
    if ticks <= 0 or ticks >= 2**63 - 1:
        return None
    return _FILETIME_EPOCH + dt.timedelta(microseconds=ticks // 10)


def interval_to_timedelta(value: int | str | None) -> dt.timedelta | None:
    """minPwdAge, maxPwdAge, lockoutDuration: negative 100-ns intervals. None = never
    (the int64 minimum, or 0 for the maximum age)."""
    if value is None or value == "":
        return None
    ticks = int(value)
    if ticks == _NEVER:
        return None
    return dt.timedelta(microseconds=abs(ticks) // 10)


def lockout_duration(attrs: dict[str, Any], *, pso: bool) -> dt.timedelta | None:
    """How long a lockout lasts; None = until an administrator unlocks."""
    name = "msDS-LockoutDuration" if pso else "lockoutDuration"
    value = interval_to_timedelta(first_value(attrs, name))
    return None if value is None or value == dt.timedelta(0) else value


def policy_from_domain(attrs: dict[str, Any]) -> PasswordPolicy:
    max_age = interval_to_timedelta(first_value(attrs, "maxPwdAge"))
    return PasswordPolicy(
        min_length=_int(attrs, "minPwdLength"),
        complexity=bool(_int(attrs, "pwdProperties") & DOMAIN_PASSWORD_COMPLEX),
        history_length=_int(attrs, "pwdHistoryLength"),
        min_age=interval_to_timedelta(first_value(attrs, "minPwdAge")) or dt.timedelta(0),
        max_age=max_age or None,  # 0 = never expires
        lockout_threshold=_int(attrs, "lockoutThreshold"),
        source="domain",
    )


def policy_from_pso(dn: str, attrs: dict[str, Any]) -> PasswordPolicy:
    max_age = interval_to_timedelta(first_value(attrs, "msDS-MaximumPasswordAge"))
    complexity = str(first_value(attrs, "msDS-PasswordComplexityEnabled") or "").upper()
    return PasswordPolicy(
        min_length=_int(attrs, "msDS-MinimumPasswordLength"),
        complexity=complexity == "TRUE",
        history_length=_int(attrs, "msDS-PasswordHistoryLength"),
        min_age=interval_to_timedelta(first_value(attrs, "msDS-MinimumPasswordAge"))
        or dt.timedelta(0),
        max_age=max_age or None,  # 0 = never expires
        lockout_threshold=_int(attrs, "msDS-LockoutThreshold"),
        source=dn,
    )
