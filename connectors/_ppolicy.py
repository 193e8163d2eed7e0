"""The ppolicy overlay's wire details: the Password Modify exop (and the user's own change
through it), the response control and the policy/state attributes.

slapd answers a password operation that carries the ppolicy request control
(draft-behera-ldap-password-policy) with a response control that names the rule
that failed; ldap3 2.9.1 does not know this control and hands back its raw BER
value, which we decode with pyasn1. `refine` plugs that into
`connectors._ldap.translate_errors`, so ldap3 errors still become ours in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core import exceptions as lexc

# pyasn1 ships no type information.
from pyasn1.codec.ber import decoder as ber_decoder  # type: ignore[import-untyped]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
from pyasn1.type import namedtype, namedval, tag, univ  # type: ignore[import-untyped]
from pydantic import SecretStr

from connectors import _ldap_send
from connectors._ldap import (
    Context,
    check_write_guard,
    close_quietly,
    open_connection,
    server_url,
    translate_errors,
)
from connectors.base import (
    AccessDenied,
    AccountDisabled,
    AccountLocked,
    DirectoryError,
    DirectorySettings,
    DirectoryUser,
    PasswordPolicy,
    PolicyViolation,
)
from wire.status import PolicyReason

PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
# (oid, criticality, value) as ldap3 takes controls; non-critical so a server without
# ppolicy still answers.
PPOLICY_REQUEST = (PPOLICY_OID, False, None)
# pwdAccountLockedTime with this value: locked by an administrator, permanently.
DISABLED_LOCK_TIME = "000001010000Z"
STATE_ATTRS = ["pwdChangedTime", "pwdAccountLockedTime", "pwdPolicySubentry", "pwdReset"]
POLICY_ATTRS = [
    "pwdMinLength",
    "pwdMaxLength",
    "pwdInHistory",
    "pwdMinAge",
    "pwdMaxAge",
    "pwdMaxFailure",
    "pwdCheckQuality",
    "pwdLockout",
    "pwdLockoutDuration",
    "pwdMustChange",
]

# --------------------------------------------------------------------------- ppolicy control


class _Warning(univ.Choice):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "timeBeforeExpiration",
            univ.Integer().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)
            ),
        ),
        namedtype.NamedType(
            "graceAuthNsRemaining",
            univ.Integer().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)
            ),
        ),
    )


class _PPolicyError(univ.Enumerated):  # type: ignore[misc]
    namedValues = namedval.NamedValues(
        ("passwordExpired", 0),
        ("accountLocked", 1),
        ("changeAfterReset", 2),
        ("passwordModNotAllowed", 3),
        ("mustSupplyOldPassword", 4),
        ("insufficientPasswordQuality", 5),
        ("passwordTooShort", 6),
        ("passwordTooYoung", 7),
        ("passwordInHistory", 8),
        ("passwordTooLong", 9),
    )


class _PPolicyResponse(univ.Sequence):  # type: ignore[misc]
    """draft-behera-ldap-password-policy PasswordPolicyResponseValue."""

    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType(
            "warning",
            _Warning().subtype(
                explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)
            ),
        ),
        namedtype.OptionalNamedType(
            "error",
            _PPolicyError().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)
            ),
        ),
    )


@dataclass(frozen=True)
class PPolicyResponse:
    error: int | None = None
    time_before_expiration: int | None = None
    grace_logins_remaining: int | None = None

    @property
    def error_name(self) -> str | None:
        if self.error is None:
            return None
        names = {int(value): str(name) for name, value in _PPolicyError.namedValues.items()}
        return names.get(self.error, str(self.error))


def decode_ppolicy_response(value: bytes | None) -> PPolicyResponse:
    """Decode the ppolicy response control value; empty or garbled -> no information."""
    if not value:
        return PPolicyResponse()
    try:
        decoded, _ = ber_decoder.decode(bytes(value), asn1Spec=_PPolicyResponse())
    except PyAsn1Error:
        return PPolicyResponse()
    error = int(decoded["error"]) if decoded["error"].isValue else None
    before = grace = None
    warning = decoded["warning"]
    if warning.isValue:
        name = warning.getName()
        if name == "timeBeforeExpiration":
            before = int(warning[name])
        elif name == "graceAuthNsRemaining":
            grace = int(warning[name])
    return PPolicyResponse(error, before, grace)


def ppolicy_response(result: dict[str, Any] | None) -> PPolicyResponse:
    """The ppolicy response control of an ldap3 result dict (`conn.result`), if any."""
    control = ((result or {}).get("controls") or {}).get(PPOLICY_OID)
    return decode_ppolicy_response(control.get("value") if control else None)


_POLICY_REASONS = {
    5: PolicyReason.COMPLEXITY,  # insufficientPasswordQuality (a check module refused it)
    6: PolicyReason.TOO_SHORT,
    7: PolicyReason.TOO_YOUNG,
    8: PolicyReason.HISTORY,
    9: PolicyReason.TOO_LONG,
}


def refine(
    exc: lexc.LDAPOperationResult, context: Context, result: dict[str, Any] | None
) -> DirectoryError | None:
    """Name a refusal from the ppolicy response control; None = generic mapping."""
    response = ppolicy_response(result)
    detail = f"{getattr(exc, 'description', '')}: {getattr(exc, 'message', '') or ''}".strip()
    if response.error is not None:
        detail = f"{detail} (ppolicy {response.error_name})"
    if response.error in _POLICY_REASONS:
        return PolicyViolation(_POLICY_REASONS[response.error], detail)
    if response.error == 1:  # accountLocked (binds: needs ppolicy_use_lockout)
        return AccountLocked(detail)
    if response.error == 3:  # passwordModNotAllowed: pwdAllowUserChange FALSE
        return AccessDenied(detail)
    if response.error == 0:  # passwordExpired at bind: as AD's 0x532, account_disabled
        return AccountDisabled(detail)
    if response.error is not None:  # changeAfterReset, mustSupplyOldPassword
        return DirectoryError(detail)
    return None


# --------------------------------------------------------------------------- helpers


def values(attrs: dict[str, Any], name: str) -> list[Any]:
    value = attrs.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def first(attrs: dict[str, Any], name: str) -> str | None:
    vals = values(attrs, name)
    return str(vals[0]) if vals else None


def int_value(attrs: dict[str, Any], name: str) -> int:
    value = first(attrs, name)
    return int(value) if value else 0


def parse_generalized_time(value: str | None) -> dt.datetime | None:
    """LDAP GeneralizedTime (20240131120000Z, optionally with .ffffff) -> aware UTC."""
    if not value or not value.endswith("Z"):
        return None
    main, _, fraction = value[:-1].partition(".")
    # Sliced rather than strptime (about 25 us, on every lookup of a user with
    # pwdChangedTime): 14 ASCII digits, then datetime checks the ranges.
    if len(main) != 14 or not (main.isascii() and main.isdigit()):
        return None
    try:
        parsed = dt.datetime(
            int(main[:4]), int(main[4:6]), int(main[6:8]),
            int(main[8:10]), int(main[10:12]), int(main[12:14]), tzinfo=dt.UTC,
        )
    except ValueError:
        return None
    if fraction.isdigit():
        parsed += dt.timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return parsed


# --------------------------------------------------------------------------- attributes


@dataclass(frozen=True)
class AccountState:
    """The account state a write decides on, read fresh just before it."""

    policy_dn: str | None
    locked_time: str | None
    pwd_reset: bool
    changed: dt.datetime | None

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> AccountState:
        return cls(
            policy_dn=first(attrs, "pwdPolicySubentry"),
            locked_time=first(attrs, "pwdAccountLockedTime"),
            pwd_reset=(first(attrs, "pwdReset") or "").upper() == "TRUE",
            changed=parse_generalized_time(first(attrs, "pwdChangedTime")),
        )

    @property
    def disabled(self) -> bool:
        return self.locked_time == DISABLED_LOCK_TIME

    def too_young(self, min_age: dt.timedelta) -> bool:
        if self.pwd_reset or self.changed is None or min_age <= dt.timedelta(0):
            return False
        return dt.datetime.now(dt.UTC) < self.changed + min_age


def policy_from_attrs(attrs: dict[str, Any], *, complexity: bool) -> PasswordPolicy:
    """A pwdPolicy entry as our PasswordPolicy. ppolicy checks lengths only when
    pwdCheckQuality is on, so without it the lengths are not reported as rules."""
    quality = int_value(attrs, "pwdCheckQuality") > 0
    max_age = int_value(attrs, "pwdMaxAge")
    lockout = (first(attrs, "pwdLockout") or "").upper() == "TRUE"
    return PasswordPolicy(
        min_length=int_value(attrs, "pwdMinLength") if quality else 0,
        max_length=(int_value(attrs, "pwdMaxLength") or None) if quality else None,
        complexity=complexity,
        history_length=int_value(attrs, "pwdInHistory"),
        min_age=dt.timedelta(seconds=int_value(attrs, "pwdMinAge")),
        max_age=dt.timedelta(seconds=max_age) if max_age else None,
        lockout_threshold=int_value(attrs, "pwdMaxFailure") if lockout else 0,
        source=str(attrs.get("dn", "none")),
    )


# --------------------------------------------------------------------------- the exop


def forget_secrets(conn: ldap3.Connection) -> None:
    """ldap3 keeps the last request (a Password Modify's BER value holds the new
    password) and the bind password on the Connection, which may outlive the call
    in a traceback: drop both once the bind and the write are done. (SYNC
    connections never re-bind by themselves, so the password is not needed again.)"""
    conn.request = None
    conn.password = None


def password_modify(
    conn: ldap3.Connection, dn: str, new: SecretStr, old: SecretStr | None = None
) -> None:
    """RFC 3062 Password Modify, no client-side hash, with the ppolicy request control.

    On failure the ldap3 exception loses its traceback: ldap3's frames hold the
    passwords in their locals, which a renderer that shows locals (Sentry, rich)
    would print. The exception itself, with the server's answer, is kept.
    """
    try:
        _ldap_send.password_modify(
            conn,
            dn,
            new.get_secret_value(),
            old.get_secret_value() if old is not None else None,
            controls=[PPOLICY_REQUEST],
        )
    except (lexc.LDAPException, OSError) as exc:
        raise exc.with_traceback(None)  # noqa: B904 - the same exception, minus ldap3's frames
    finally:
        forget_secrets(conn)


def change_as_user(
    settings: DirectorySettings,
    user: DirectoryUser,
    old: SecretStr,
    new: SecretStr,
    *,
    before_write: Callable[[], None],
) -> str:
    """The user's own change, on a connection bound AS THE USER with the ppolicy
    request control (a wrong old password is wrong_old_password, a locked account says
    accountLocked), then the exop with the old password, so slapd checks it and the
    history. `before_write` runs once the bind worked, right before the exop (the
    connector's pre-validation). Returns the URL of the server that took it."""
    conn = open_connection(
        settings,
        user=user.dn,
        password=old,
        context="user_bind",
        bind_controls=[PPOLICY_REQUEST],
        refine=refine,
    )
    dc = server_url(conn)
    try:
        check_write_guard(conn, user.server, user.write_by)
        before_write()
        with translate_errors("change", dc=dc, refine=refine, conn=conn):
            password_modify(conn, user.dn, new, old)
    finally:
        forget_secrets(conn)
        close_quietly(conn)
    return dc
