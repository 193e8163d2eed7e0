"""The one interface every directory back end implements, and its error tree.

Everything above the connectors (scope rules, the pipeline, `writeback-agent check`)
talks to a `DirectoryConnector` and catches `DirectoryError`. Each error carries the
result status (and, for policy refusals, the reason) of docs/protocol.md section 8, and
`write_sent`, so the pipeline never has to inspect LDAP result codes or ldap3
exceptions. ldap3 exceptions are translated to these exactly once, by the table in
`connectors/_ldap.py`; nothing above connectors/ imports ldap3.

Exception tree::

    DirectoryError                    internal_error (anything unclassified)
    ├── UserNotFound                  user_not_found
    ├── AmbiguousUser                 ambiguous_user
    ├── PolicyViolation               policy_violation (+ .reason: PolicyReason)
    ├── WrongOldPassword              wrong_old_password
    ├── AccountDisabled               account_disabled
    ├── AccountLocked                 account_locked
    ├── InvalidCredentials            invalid_credentials (op authenticate: wrong password)
    ├── PasswordExpired               password_expired (+ .reason: CredentialReason)
    ├── AccessDenied                  access_denied (service account lacks a right)
    ├── InsecureTransport             internal_error (plain ldap:// refused before any bind)
    ├── PartiallyApplied              partially_applied (the password WAS set; .applied
    │                                 and .not_applied say what else was and was not)
    └── DirectoryUnavailable          directory_unavailable (retryable: socket faults,
        │                             timeouts, every server of the pool down)
        ├── WriteNotSent              nothing of the write left this machine (the connect,
        │                             TLS handshake, bind or a preceding read failed):
        │                             safe to retry
        └── WriteOutcomeUnknown       the write was sent and its answer lost: it may or
                                      may not have been applied (in_doubt), never retried

`write_sent` on every error: False = the directory never got (or never performed) the
write, so retrying is safe; True = the directory answered the write (refused it, or
applied part of it); None = unknown.

Messages and details are for operators; they never contain a password. The
`detail` may quote the directory's diagnostic text (Samba's is useful), which never
echoes the password.

`check()` items, the same names for every back end (agent/checks.py prints them as
``directory <name>: <item>``)::

    transport            every URL is ldaps:// or StartTLS (plain LDAP is refused
                         before any bind unless the test-only allow_insecure is set)
    connect              a server answered; the TLS certificate was validated
    service_bind         the service account's bind
    search_base <dn>     each search base (base_dns) is readable
    password_policy      the default / domain password policy is readable
    rights <dn>          each DN of the write scope (`DirectorySettings.write_scope`):
                         the rights a reset needs there, or which ones are missing
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

    `urls` are tried in order, the next when one does not answer (our own failover
    loop in connectors/_ldap.py, not an ldap3 ServerPool). Certificate validation is
    always on; `ca_file` names the CA bundle (None = the system store). Plain
    `ldap://` without StartTLS is refused before the first bind (the bind carries the
    service account's password), for reads, writes and `check` alike, unless
    `allow_insecure` is set, which exists for tests only.
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
    # Password policies (AD domain policy and PSOs, OpenLDAP pwdPolicy entries) are
    # kept this long per connector instead of being read for every request; any
    # policy refusal from the directory re-reads them. 0 = read every time.
    policy_cache_seconds: float = Field(default=60.0, ge=0)

    @property
    def write_scope(self) -> list[str]:
        """DNs under which writes are allowed; `check` verifies the rights there. The
        agent's DirectoryConfig narrows it to its scope.base_dns."""
        return list(self.base_dns)


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
class DirectoryUser:
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
    # The policy that applies to this user, as found (AD msDS-ResultantPSO, OpenLDAP
    # pwdPolicySubentry); None = the domain / default policy.
    policy_dn: str | None = None
    # False: the lookup did not read policy_dn (AD, when no PSO is stricter than the
    # domain); the connector reads it when it needs the user's own policy.
    policy_known: bool = True
    # Where the user was read and the entry's change stamp there (AD uSNChanged,
    # OpenLDAP entryCSN): any write to the entry on that server changes the stamp.
    # The pipeline's write marker (agent/permits.py) is made of the two.
    server: str = ""
    change_stamp: str = ""
    # When set (epoch seconds; the pipeline sets it from its permit), a write for this
    # user is sent only before `write_by` and only to `server`.
    write_by: float | None = None


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
    # Whether an administrative reset is checked against the history too (AD: only
    # when the DC honours the policy-hints control; Samba 4.17 does not).
    history_on_reset: bool = True

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
            "history_on_reset": self.history_on_reset,
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
    # A server answer (the default): the directory got the request and refused it.
    write_sent: bool | None = True

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
    write_sent: bool | None = False  # refused here, before a byte left


class PartiallyApplied(DirectoryError):
    """The password was set, but a companion write the directory would not take in
    the same operation (OpenLDAP: pwdReset / unlock after the Password Modify exop)
    failed even after retries. Reported as partially_applied, never as a failure the
    user would retry with a password that already works."""

    status = Status.PARTIALLY_APPLIED

    def __init__(
        self,
        detail: str,
        *,
        applied: Sequence[str],
        not_applied: Sequence[str] = (),
        dc: str | None = None,
    ) -> None:
        super().__init__(detail, dc=dc)
        self.applied = tuple(applied)
        self.not_applied = tuple(not_applied)


class DirectoryUnavailable(DirectoryError):
    """Retryable: no server answered (socket fault, timeout, TLS handshake failure).
    Raised as one of the two subclasses, which say whether a write went out."""

    status = Status.DIRECTORY_UNAVAILABLE
    write_sent: bool | None = None


class WriteNotSent(DirectoryUnavailable):
    """Nothing of the write left this machine: safe to retry, on this or another DC."""

    write_sent = False


class WriteOutcomeUnknown(DirectoryUnavailable):
    """The write was sent and no answer came back: it may have been applied."""

    write_sent = None


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class DirectoryConnector(Protocol):
    """One directory. Not thread-safe: the agent gives each worker thread its own.

    Every method raises a `DirectoryError` subclass on failure and nothing else
    (programming errors aside). Passwords arrive as `SecretStr` and are revealed only
    at the moment they are put on the wire.
    """

    settings: DirectorySettings

    def find_user(self, query: UserQuery) -> DirectoryUser:
        """Exactly one user or UserNotFound / AmbiguousUser. Values are filter-escaped."""
        ...

    def look_ahead(self, query: UserQuery) -> None:
        """Send the search `find_user(query)` starts with and return without its answer,
        so the directory works on it while the agent does other work; the next
        `find_user(query)` reads it, and any other call first reads and drops it. Best
        effort: never raises (`find_user` then searches as usual)."""
        ...

    def group_dns(self, user: DirectoryUser) -> frozenset[str]:
        """DNs (lower-cased) of every group the user is in, nested membership included."""
        ...

    def password_policy(self, user: DirectoryUser) -> PasswordPolicy: ...

    def reset_password(
        self,
        user: DirectoryUser,
        new_password: SecretStr,
        *,
        unlock: bool = False,
        must_change: bool = False,
    ) -> WriteOutcome:
        """Administrative reset. Refuses a disabled account; a locked one unless unlock."""
        ...

    def change_password(
        self, user: DirectoryUser, old_password: SecretStr, new_password: SecretStr
    ) -> WriteOutcome:
        """The user's own change: the directory checks the old password and history."""
        ...

    def unlock(self, user: DirectoryUser) -> WriteOutcome: ...

    def authenticate(self, user: DirectoryUser, password: SecretStr) -> None:
        """A simple bind AS THE USER over TLS on its own connection (the directory counts
        a failure toward lockout like any logon). Raises InvalidCredentials,
        AccountLocked, AccountDisabled, PasswordExpired or DirectoryUnavailable."""
        ...

    def check(self) -> HealthReport:
        """TLS, bind, search bases readable, policy readable, and the rights a reset
        needs on every DN of `settings.write_scope`; item names in the module docstring."""
        ...

    def close(self) -> None: ...


def make_connector(settings: DirectorySettings) -> DirectoryConnector:
    """The write path is chosen from configuration, never by falling back on errors."""
    if settings.kind == "active_directory":
        from connectors.active_directory import ActiveDirectoryConnector

        return ActiveDirectoryConnector(settings)
    from connectors.openldap import OpenLdapConnector

    return OpenLdapConnector(settings)
