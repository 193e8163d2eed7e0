"""The one interface every directory back end implements, and its error tree.

Everything above the connectors (scope rules, the pipeline, `writeback-agent check`)
talks to a `DirectoryConnector` and catches `DirectoryError`. Each error carries the
result status (and, for policy refusals, the reason) of DESIGN.md section 3, so the
pipeline never has to inspect LDAP result codes. ldap3 exceptions are translated to
these exactly once, in `connectors/_ldap.py`.

Exception tree::

    DirectoryError                    status internal_error (anything unclassified)
    ├── UserNotFound                  user_not_found
    ├── AmbiguousUser                 ambiguous_user
    ├── PolicyViolation               policy_violation (+ .reason: PolicyReason)
    ├── WrongOldPassword              wrong_old_password
    ├── AccountDisabled               account_disabled
    ├── AccountLocked                 account_locked
    ├── InvalidCredentials            invalid_credentials (op authenticate: wrong password)
    ├── PasswordExpired               password_expired (+ .reason: CredentialReason)
    ├── AccessDenied                  access_denied (service account lacks a right)
    ├── InsecureTransport             internal_error (plain ldap:// refused for writes)
    ├── PartiallyApplied              internal_error (+ .applied: what did get written)
    └── DirectoryUnavailable          directory_unavailable (retryable: socket faults,
                                      timeouts, every server of the pool down)

Messages and details are for operators; they never contain a password. The
`detail` may quote the directory's diagnostic text (Samba's is useful), which never
echoes the password.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from wire.status import CredentialReason, PolicyReason, Status

# --------------------------------------------------------------------------- settings


class DirectorySettings(BaseModel):
    """How to reach one directory. Part of the agent's single settings object.

    `urls` are tried in order (an ldap3 ServerPool with FIRST strategy, active
    failover). Certificate validation is always on; `ca_file` names the CA bundle
    (None = the system store). Plain `ldap://` without StartTLS is refused for any
    write unless `allow_insecure` is set, which exists for tests only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    kind: Literal["active_directory", "openldap"]
    urls: list[str] = Field(min_length=1)
    start_tls: bool = False
    allow_insecure: bool = False
    ca_file: Path | None = None
    bind_dn: str
    bind_password: SecretStr
    base_dns: list[str] = Field(min_length=1)
    connect_timeout: float = 5.0
    receive_timeout: int = 10
    # OpenLDAP: the ppolicy entry that applies when a user has no pwdPolicySubentry.
    default_policy_dn: str | None = None
    # OpenLDAP: attributes used for lookups (AD always uses sAMAccountName / UPN / mail).
    login_attribute: str = "uid"
    mail_attribute: str = "mail"
    # OpenLDAP only: pre-validate AD-style complexity (3 of 5 categories, no account or
    # display-name tokens) before writing, because ppolicy itself checks length only and
    # Debian ships no quality-check module (ppm / check_password). Reported as
    # PasswordPolicy.complexity. AD reads complexity from the domain or PSO instead.
    require_complexity: bool = False


# --------------------------------------------------------------------------- values


class LookupKind(StrEnum):
    LOGIN = "login"  # sAMAccountName / uid
    UPN = "upn"  # userPrincipalName or mail
    ID = "id"  # objectGUID / entryUUID, canonical string form


@dataclass(frozen=True)
class UserQuery:
    kind: LookupKind
    value: str


@dataclass(frozen=True)
class UserRef:
    """A user as found in the directory, with the state the pipeline decides on."""

    dn: str
    id: str  # objectGUID / entryUUID, canonical string form
    login: str
    upn: str | None = None
    mail: str | None = None
    display_name: str | None = None
    disabled: bool = False
    locked: bool = False
    protected: bool = False  # AD adminCount=1 (or an operator-protected entry)
    pwd_last_set: dt.datetime | None = None  # None: never set / must change


@dataclass(frozen=True)
class PasswordPolicy:
    """The effective policy for one user, for pre-validation and for the portal."""

    min_length: int = 0
    max_length: int | None = None
    complexity: bool = False  # AD 3-of-5 + no account/display-name tokens
    history_length: int = 0
    min_age: dt.timedelta = dt.timedelta(0)
    max_age: dt.timedelta | None = None
    lockout_threshold: int = 0
    source: str = "default"  # "domain", a PSO DN, or a ppolicy entry DN

    def describe(self) -> dict[str, object]:
        """The JSON-safe form sent to the portal (preflight, policy_violation)."""
        return {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "complexity": self.complexity,
            "history_length": self.history_length,
            "min_age_seconds": int(self.min_age.total_seconds()),
            "max_age_seconds": None if self.max_age is None else int(self.max_age.total_seconds()),
            "lockout_threshold": self.lockout_threshold,
        }


@dataclass(frozen=True)
class WriteOutcome:
    """What a successful write did, for the audit line and the signed result."""

    dc: str  # the server URL that took the write
    applied: tuple[str, ...] = ()  # e.g. ("password", "unlock", "must_change")


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class HealthReport:
    """`writeback-agent check` and the health probe: one line per thing verified."""

    directory: str
    items: tuple[CheckItem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)


# --------------------------------------------------------------------------- errors


class DirectoryError(Exception):
    status: Status = Status.INTERNAL_ERROR

    def __init__(self, detail: str, *, dc: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.dc = dc

    @property
    def reason(self) -> str | None:
        return None


class UserNotFound(DirectoryError):
    status = Status.USER_NOT_FOUND


class AmbiguousUser(DirectoryError):
    status = Status.AMBIGUOUS_USER


class PolicyViolation(DirectoryError):
    status = Status.POLICY_VIOLATION

    def __init__(
        self,
        reason: PolicyReason,
        detail: str,
        *,
        dc: str | None = None,
        policy: PasswordPolicy | None = None,
    ) -> None:
        super().__init__(detail, dc=dc)
        self.policy_reason = reason
        self.policy = policy

    @property
    def reason(self) -> str | None:
        return self.policy_reason.value


class WrongOldPassword(DirectoryError):
    status = Status.WRONG_OLD_PASSWORD


class AccountDisabled(DirectoryError):
    status = Status.ACCOUNT_DISABLED


class AccountLocked(DirectoryError):
    status = Status.ACCOUNT_LOCKED


class InvalidCredentials(DirectoryError):
    """Op authenticate: the bind as the user failed (wrong password, or no such user)."""

    status = Status.INVALID_CREDENTIALS


class PasswordExpired(DirectoryError):
    """Op authenticate: the password is right but must be changed before a logon."""

    status = Status.PASSWORD_EXPIRED

    def __init__(self, reason: CredentialReason, detail: str, *, dc: str | None = None) -> None:
        super().__init__(detail, dc=dc)
        self.credential_reason = reason

    @property
    def reason(self) -> str | None:
        return self.credential_reason.value


class AccessDenied(DirectoryError):
    status = Status.ACCESS_DENIED


class InsecureTransport(DirectoryError):
    status = Status.INTERNAL_ERROR


class PartiallyApplied(DirectoryError):
    """A write the directory would not take in one modify stopped half-way."""

    status = Status.INTERNAL_ERROR

    def __init__(self, detail: str, *, applied: Sequence[str], dc: str | None = None) -> None:
        super().__init__(detail, dc=dc)
        self.applied = tuple(applied)


class DirectoryUnavailable(DirectoryError):
    """Retryable: no server answered (socket fault, timeout, TLS handshake failure)."""

    status = Status.DIRECTORY_UNAVAILABLE


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class DirectoryConnector(Protocol):
    """One directory. Not thread-safe: the agent gives each worker thread its own.

    Every method raises a `DirectoryError` subclass on failure and nothing else
    (programming errors aside). Passwords arrive as `SecretStr` and are revealed only
    at the moment they are put on the wire.
    """

    settings: DirectorySettings

    def find_user(self, query: UserQuery) -> UserRef:
        """Exactly one user or UserNotFound / AmbiguousUser. Values are filter-escaped."""
        ...

    def group_dns(self, user: UserRef) -> frozenset[str]:
        """DNs (lower-cased) of every group the user is in, nested membership included."""
        ...

    def password_policy(self, user: UserRef) -> PasswordPolicy: ...

    def reset_password(
        self,
        user: UserRef,
        new_password: SecretStr,
        *,
        unlock: bool = False,
        must_change: bool = False,
    ) -> WriteOutcome:
        """Administrative reset. Refuses a disabled account; a locked one unless unlock."""
        ...

    def change_password(
        self, user: UserRef, old_password: SecretStr, new_password: SecretStr
    ) -> WriteOutcome:
        """The user's own change: the directory checks the old password and history."""
        ...

    def unlock(self, user: UserRef) -> WriteOutcome: ...

    def authenticate(self, user: UserRef, password: SecretStr) -> None:
        """A simple bind AS THE USER over TLS on its own connection (the directory counts
        a failure toward lockout like any logon). Raises InvalidCredentials,
        AccountLocked, AccountDisabled, PasswordExpired or DirectoryUnavailable."""
        ...

    def check(self) -> HealthReport:
        """TLS, bind, search base readable, rights to write the password attributes."""
        ...

    def close(self) -> None: ...


def make_connector(settings: DirectorySettings) -> DirectoryConnector:
    """The write path is chosen from configuration, never by falling back on errors."""
    if settings.kind == "active_directory":
        from connectors.active_directory import ActiveDirectoryConnector

        return ActiveDirectoryConnector(settings)
    from connectors.openldap import OpenLdapConnector

    return OpenLdapConnector(settings)
