"""The "choose a new password" requirements, in words, from the policy the agent
reported (preflight, or a policy_violation result). The domain's and a fine-grained
policy's numbers come from the directory itself, so they are never out of date.
A reset lists the history rule only where the directory applies it to resets (the
agent says so in `history_on_reset`: Samba 4.17, for one, does not)."""

from __future__ import annotations

from typing import Any


def requirements(policy: dict[str, Any], *, reset: bool = False) -> list[str]:
    rules = []
    min_length = int(policy.get("min_length") or 0)
    if min_length:
        rules.append(f"At least {min_length} characters")
    max_length = policy.get("max_length")
    if max_length:
        rules.append(f"At most {int(max_length)} characters")
    if policy.get("complexity"):
        rules.append("Characters from at least three of: uppercase letters, lowercase "
                     "letters, digits, symbols")
        rules.append("Not your account name or parts of your full name")
    history = int(policy.get("history_length") or 0)
    if history and not (reset and policy.get("history_on_reset") is False):
        rules.append(f"Not one of your last {history} passwords")
    if not rules:
        rules.append("Any password your organisation's directory accepts")
    return rules
