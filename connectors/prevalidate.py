"""Check a new password against the effective policy before writing it.

Active Directory answers every policy failure with 0000052D and does not say which
rule failed; slapd's ppolicy checks length only (no complexity without a check
module). Checking what we can beforehand lets us name the rule. The directory still
has the last word: a write that passes here may still be refused (history).

The complexity rule is Windows' "passwords must meet complexity requirements":
characters from at least 3 of 5 categories, and neither the account name (if 3+
characters) nor any 3+ character token of the display name, case-insensitively.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable

from connectors.base import DirectoryUser, PasswordPolicy, PolicyViolation
from wire.status import PolicyReason

# Windows splits the display name into tokens on these characters.
_TOKEN_SPLIT = re.compile(r"[,.\-_#\s]+")


def password_length(password: str) -> int:
    """Length as the directory counts it: UTF-16 code units, like AD's unicodePwd."""
    return len(password.encode("utf-16-le")) // 2


def _categories(password: str) -> int:
    upper = lower = digit = symbol = other = False
    for ch in password:
        cat = unicodedata.category(ch)
        if cat == "Lu":
            upper = True
        elif cat == "Ll":
            lower = True
        elif ch.isdigit():
            digit = True
        elif cat.startswith("L"):
            other = True  # letters without case (CJK, ...): AD's fifth category
        else:
            symbol = True
    return sum((upper, lower, digit, symbol, other))


def name_tokens(user: DirectoryUser) -> list[str]:
    tokens = [user.login] if len(user.login) >= 3 else []
    if user.display_name:
        tokens += [t for t in _TOKEN_SPLIT.split(user.display_name) if len(t) >= 3]
    return tokens


def prevalidate(
    password: str,
    policy: PasswordPolicy,
    user: DirectoryUser,
    *,
    self_change: bool,
    now: dt.datetime | None = None,
) -> None:
    """Raise PolicyViolation naming the first rule the password breaks."""
    length = password_length(password)
    if length < policy.min_length:
        raise PolicyViolation(
            PolicyReason.TOO_SHORT,
            f"password has {length} characters, policy requires at least {policy.min_length}",
            policy=policy,
        )
    if policy.max_length is not None and length > policy.max_length:
        raise PolicyViolation(
            PolicyReason.TOO_LONG,
            f"password has {length} characters, policy allows at most {policy.max_length}",
            policy=policy,
        )
    if policy.complexity:
        lowered = password.casefold()
        for token in name_tokens(user):
            if token.casefold() in lowered:
                raise PolicyViolation(
                    PolicyReason.CONTAINS_NAME,
                    "password contains the account name or part of the display name",
                    policy=policy,
                )
        if _categories(password) < 3:
            raise PolicyViolation(
                PolicyReason.COMPLEXITY,
                "password uses fewer than 3 of: upper case, lower case, digits, symbols, "
                "other letters",
                policy=policy,
            )
    # Minimum age binds the user's own change only; an administrative reset ignores it.
    if self_change and policy.min_age > dt.timedelta(0) and user.pwd_last_set is not None:
        now = now or dt.datetime.now(dt.UTC)
        allowed_at = user.pwd_last_set + policy.min_age
        if now < allowed_at:
            raise PolicyViolation(
                PolicyReason.TOO_YOUNG,
                f"password was last set at {user.pwd_last_set.isoformat()}; "
                f"policy allows a change from {allowed_at.isoformat()}",
                policy=policy,
            )


def prevalidate_fresh(
    password: str,
    user: DirectoryUser,
    policy_of: Callable[[], PasswordPolicy],
    forget: Callable[[], None],
    *,
    self_change: bool,
) -> PasswordPolicy:
    """`prevalidate` against a possibly cached policy (`policy_of`). A refusal is only
    reported if the policy read again (after `forget`) refuses too: an administrator
    who relaxed the policy a minute ago must not see the old rule enforced. Returns
    the policy the password was checked against."""
    policy = policy_of()
    try:
        prevalidate(password, policy, user, self_change=self_change)
    except PolicyViolation:
        forget()
        fresh = policy_of()
        if fresh == policy:
            raise
        prevalidate(password, fresh, user, self_change=self_change)
        return fresh
    return policy
