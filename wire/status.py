"""The stable vocabulary of results: statuses and reasons.

These strings are part of the wire contract (docs/protocol.md) and of the operator
log format, so they never change meaning. Connectors raise errors that carry one
status (and for policy violations one reason); the pipeline puts them in the
signed result; the portal maps them to user-facing pages.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    # The new password WAS set, but a companion change (unlock, must-change) that the
    # directory could not take in the same write was not applied; `detail` says which.
    PARTIALLY_APPLIED = "partially_applied"
    NOT_MANAGED = "not_managed"
    USER_NOT_FOUND = "user_not_found"
    AMBIGUOUS_USER = "ambiguous_user"
    POLICY_VIOLATION = "policy_violation"
    WRONG_OLD_PASSWORD = "wrong_old_password"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_LOCKED = "account_locked"
    ACCESS_DENIED = "access_denied"
    DIRECTORY_UNAVAILABLE = "directory_unavailable"
    REJECTED = "rejected"
    IN_DOUBT = "in_doubt"
    # A newer request for the same directory user was permitted first; this older
    # one is never written (the newest password wins, across agents).
    SUPERSEDED = "superseded"
    # Answers of op authenticate (the portal's sign-in through the agent).
    INVALID_CREDENTIALS = "invalid_credentials"
    PASSWORD_EXPIRED = "password_expired"
    INTERNAL_ERROR = "internal_error"


class PolicyReason(StrEnum):
    """Why a password was refused (status policy_violation)."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    COMPLEXITY = "complexity"
    HISTORY = "history"
    TOO_YOUNG = "too_young"
    CONTAINS_NAME = "contains_name"
    UNKNOWN = "unknown"


class NotManagedReason(StrEnum):
    """Why writeback is not allowed for this account (status not_managed)."""

    WRITEBACK_DISABLED = "writeback_disabled"
    OUTSIDE_SCOPE = "outside_scope"
    NOT_IN_ALLOWED_GROUP = "not_in_allowed_group"
    IN_DENIED_GROUP = "in_denied_group"
    PROTECTED_ACCOUNT = "protected_account"
    NO_DIRECTORY = "no_directory"


class CredentialReason(StrEnum):
    """Why a correct password cannot be used to sign in (status password_expired)."""

    MUST_CHANGE = "must_change"
    EXPIRED = "expired"


class RejectReason(StrEnum):
    """Why an envelope was refused before anything was decrypted (status rejected)."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_TENANT = "wrong_tenant"
    WRONG_AGENT_GROUP = "wrong_agent_group"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAYED = "replayed"
    NOT_FOR_THIS_AGENT = "not_for_this_agent"
    DECRYPT_FAILED = "decrypt_failed"
    SUPERSEDED = "superseded"
    # Added with the protocol (issue 3): a portal key past its not_after, and a
    # request whose exp-iat is not positive or exceeds the agent's max lifetime.
    RETIRED_KEY = "retired_key"
    BAD_LIFETIME = "bad_lifetime"


# What the end user sees. The portal may localise; these are the defaults the SDK
# offers. Never includes anything from the directory's own error text.
USER_MESSAGES: dict[Status, str] = {
    Status.SUCCEEDED: "Your password has been updated.",
    Status.PARTIALLY_APPLIED: (
        "Your new password is set, but your account could not be fully updated. "
        "Contact your IT help desk if you cannot sign in."
    ),
    Status.NOT_MANAGED: (
        "Your password is managed by your administrator and can't be reset here. "
        "Contact your IT help desk."
    ),
    Status.USER_NOT_FOUND: "We could not verify your account.",
    Status.AMBIGUOUS_USER: "We could not verify your account.",
    Status.POLICY_VIOLATION: "The new password does not meet the password policy.",
    Status.WRONG_OLD_PASSWORD: "The current password is not correct.",
    Status.ACCOUNT_DISABLED: "Your account is disabled. Contact your IT help desk.",
    Status.ACCOUNT_LOCKED: (
        "Your account is locked. Contact your IT help desk or reset with unlock."
    ),
    Status.ACCESS_DENIED: (
        "An on-premises configuration error prevents password changes. Contact your IT help desk."
    ),
    Status.DIRECTORY_UNAVAILABLE: "The directory is not reachable right now. Try again later.",
    Status.REJECTED: "The request could not be processed.",
    Status.IN_DOUBT: "We could not confirm whether your password was changed. Try again.",
    Status.SUPERSEDED: "A newer request for your account was used instead of this one.",
    Status.INVALID_CREDENTIALS: "The user name or password is not correct.",
    Status.PASSWORD_EXPIRED: "Your password has expired or must be changed before you sign in.",
    Status.INTERNAL_ERROR: "Something went wrong. Try again later.",
}

POLICY_MESSAGES: dict[PolicyReason, str] = {
    PolicyReason.TOO_SHORT: "The new password is too short.",
    PolicyReason.TOO_LONG: "The new password is too long.",
    PolicyReason.COMPLEXITY: (
        "The new password must contain characters from at least three of: "
        "uppercase letters, lowercase letters, digits, symbols."
    ),
    PolicyReason.HISTORY: (
        "The new password was used recently. Choose one you have not used before."
    ),
    PolicyReason.TOO_YOUNG: "Your password was changed too recently to change it again yet.",
    PolicyReason.CONTAINS_NAME: (
        "The new password must not contain your account name or parts of your full name."
    ),
    PolicyReason.UNKNOWN: "The new password does not meet the password policy.",
}


# Numeric event ids for the audit line (`event_id`), for Windows Event Log and SIEM
# rules. Entra Connect's writeback uses 31xxx/33xxx; ours are our own, documented
# with what to do for each in docs/errors.md. Stable: never renumbered.
EVENT_IDS: dict[Status, int] = {
    Status.SUCCEEDED: 4100,
    Status.PARTIALLY_APPLIED: 4101,
    Status.NOT_MANAGED: 4110,
    Status.USER_NOT_FOUND: 4120,
    Status.AMBIGUOUS_USER: 4121,
    Status.POLICY_VIOLATION: 4130,
    Status.WRONG_OLD_PASSWORD: 4131,
    Status.ACCOUNT_DISABLED: 4140,
    Status.ACCOUNT_LOCKED: 4141,
    Status.ACCESS_DENIED: 4150,
    Status.DIRECTORY_UNAVAILABLE: 4160,
    Status.REJECTED: 4170,
    Status.IN_DOUBT: 4180,
    Status.SUPERSEDED: 4181,
    Status.INVALID_CREDENTIALS: 4132,
    Status.PASSWORD_EXPIRED: 4142,
    Status.INTERNAL_ERROR: 4190,
}
