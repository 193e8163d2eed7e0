"""Op authenticate: is this the user's current password? A simple bind AS THE USER.

Why a bind and not a compare: the directory then applies everything it applies to a
logon (lockout counting, disabled, expired, must-change), so the portal's sign-in
is exactly as strict as the domain's and a password guesser is locked out as on a
workstation. The bind uses its own connection, never the service one, and is closed
at once; plain LDAP is refused before the first byte, as for writes.

Answers, and only these (statuses in docs/errors.md): nothing (the password works),
InvalidCredentials, AccountLocked, AccountDisabled, PasswordExpired
(reason must_change / expired), DirectoryUnavailable.

Active Directory names the reason in the `data NNN` part of the bind's diagnostic
message: 52e wrong password, 775 locked out, 533 disabled, 701 account expired,
532 password expired, 773 must change at next logon. OpenLDAP's ppolicy overlay
puts it in the bind response control: accountLocked, passwordExpired,
changeAfterReset (the last one on a SUCCESSFUL bind, so it is read after the bind).
"""

from __future__ import annotations

from typing import Any

import ldap3
from ldap3.core import exceptions as lexc
from pydantic import SecretStr

from connectors import _ppolicy as pp
from connectors._ldap import (
    Context,
    ad_bind_data,
    close_quietly,
    open_connection,
)
from connectors.base import (
    AccountDisabled,
    AccountLocked,
    DirectoryError,
    DirectorySettings,
    DirectoryUser,
    InvalidCredentials,
    PasswordExpired,
)
from wire.status import CredentialReason

# AD bind data codes (hex in the message): what each means for a sign-in.
_AD_DATA: dict[int, type[DirectoryError] | CredentialReason] = {
    0x52E: InvalidCredentials,
    0x525: InvalidCredentials,  # no such user: the same answer as a wrong password
    0x775: AccountLocked,
    0x533: AccountDisabled,
    0x701: AccountDisabled,  # the account (not the password) has expired
    0x532: CredentialReason.EXPIRED,
    0x773: CredentialReason.MUST_CHANGE,
}


def _detail(exc: lexc.LDAPOperationResult) -> str:
    return f"{getattr(exc, 'description', '')}: {getattr(exc, 'message', '') or ''}".strip()


def refine_ad(
    exc: lexc.LDAPOperationResult, context: Context, result: dict[str, Any] | None
) -> DirectoryError | None:
    """A failed bind as the user, named from AD's `data NNN` sub-code."""
    if not isinstance(exc, lexc.LDAPInvalidCredentialsResult):
        return None
    detail = _detail(exc)
    found = _AD_DATA.get(ad_bind_data(getattr(exc, "message", None)) or -1, InvalidCredentials)
    if isinstance(found, CredentialReason):
        return PasswordExpired(found, detail)
    return found(detail)


def refine_openldap(
    exc: lexc.LDAPOperationResult, context: Context, result: dict[str, Any] | None
) -> DirectoryError | None:
    """A failed bind as the user, named from the ppolicy bind response control."""
    response = pp.ppolicy_response(result)
    detail = _detail(exc)
    if response.error == 1:  # accountLocked
        return AccountLocked(f"{detail} (ppolicy accountLocked)")
    if response.error == 0:  # passwordExpired (no grace logins left)
        return PasswordExpired(CredentialReason.EXPIRED, f"{detail} (ppolicy passwordExpired)")
    if isinstance(exc, lexc.LDAPInvalidCredentialsResult):
        return InvalidCredentials(detail)
    return None


def bind_as_user(settings: DirectorySettings, user: DirectoryUser, password: SecretStr) -> None:
    """Raise unless ``password`` is the user's current, usable password."""
    # open_connection refuses plain LDAP before any socket (the password stays local).
    if not password.get_secret_value():
        # An empty simple bind is an anonymous bind that "succeeds" (RFC 4513 5.1.2).
        raise InvalidCredentials(f"{user.dn}: empty password")
    openldap = settings.kind == "openldap"
    conn: ldap3.Connection | None = None
    try:
        conn = open_connection(
            settings,
            user=user.dn,
            password=password,
            context="user_bind",
            bind_controls=[pp.PPOLICY_REQUEST] if openldap else None,
            refine=refine_openldap if openldap else refine_ad,
        )
        if openldap and pp.ppolicy_response(conn.result).error == 2:  # changeAfterReset
            raise PasswordExpired(
                CredentialReason.MUST_CHANGE, f"{user.dn}: ppolicy changeAfterReset"
            )
    finally:
        if conn is not None:
            pp.forget_secrets(conn)
            close_quietly(conn)
