"""Who may have a password written back; the answer for everyone else is
`not_managed` ("your password is managed by your administrator").

Rules, first match wins (so the operator-facing reason is the most fundamental one):
writeback switched off (agent-wide or for this directory) -> outside the scope's base
DNs -> protected account (AD adminCount=1, or a protected group) -> in a denied group
-> not in any allowed group (when allowed groups are configured).

Group membership is nested; the connector resolves it (AD: LDAP_MATCHING_RULE_IN_CHAIN,
OpenLDAP: a bounded walk) and it is only asked for when a group rule exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agent.config import DirectoryConfig
from connectors.base import DirectoryUser
from connectors.dn import normalize_dn
from wire.status import NotManagedReason

__all__ = ["dn_within", "normalize_dn", "not_managed_reason"]


def dn_within(dn: str, base: str) -> bool:
    child, parent = normalize_dn(dn), normalize_dn(base)
    return len(child) >= len(parent) and child[len(child) - len(parent) :] == parent


def _intersects(groups: frozenset[str], configured: Iterable[str]) -> bool:
    wanted = {normalize_dn(g) for g in configured}
    return any(normalize_dn(g) in wanted for g in groups)


def not_managed_reason(
    *,
    writeback_enabled: bool,
    directory: DirectoryConfig,
    user: DirectoryUser,
    groups: Callable[[], frozenset[str]],
) -> NotManagedReason | None:
    """None if writeback is allowed for `user`, else the reason it is not."""
    scope = directory.scope
    if not writeback_enabled or not scope.writeback_enabled:
        return NotManagedReason.WRITEBACK_DISABLED
    bases = scope.base_dns or directory.base_dns
    if not any(dn_within(user.dn, base) for base in bases):
        return NotManagedReason.OUTSIDE_SCOPE
    if scope.protect_admin_accounts and user.protected:
        return NotManagedReason.PROTECTED_ACCOUNT
    if not (scope.protected_groups or scope.denied_groups or scope.allowed_groups):
        return None
    member_of = groups()
    if _intersects(member_of, scope.protected_groups):
        return NotManagedReason.PROTECTED_ACCOUNT
    if _intersects(member_of, scope.denied_groups):
        return NotManagedReason.IN_DENIED_GROUP
    if scope.allowed_groups and not _intersects(member_of, scope.allowed_groups):
        return NotManagedReason.NOT_IN_ALLOWED_GROUP
    return None
