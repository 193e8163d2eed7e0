"""Nested static-group membership on OpenLDAP, which has no in-chain matching rule:
member-of-member searches to a fixed point, depth capped, cycles harmless."""

from __future__ import annotations

from collections.abc import Sequence

from ldap3.utils.conv import escape_filter_chars

from connectors import _ppolicy as pp
from connectors._session import LdapSession

_MAX_GROUP_DEPTH = 16
_GROUP = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"


def _group_bases(session: LdapSession, base_dns: Sequence[str]) -> list[str]:
    """The naming contexts holding our base DNs: groups usually live outside them."""
    root = session.entry("", ["namingContexts"])
    attrs = root["attributes"] if root else {}
    contexts = [str(v) for v in pp.values(attrs, "namingContexts")]
    bases = [b.lower() for b in base_dns]
    useful = [c for c in contexts if any(b.endswith(c.lower()) for b in bases)]
    return useful or list(base_dns)


def nested_groups(session: LdapSession, base_dns: Sequence[str], user_dn: str) -> frozenset[str]:
    """DNs (lower-cased) of every group `user_dn` is in, directly or through groups."""
    seen: set[str] = set()
    frontier = {user_dn}
    bases = _group_bases(session, base_dns)
    for _ in range(_MAX_GROUP_DEPTH):
        if not frontier:
            break
        members = "".join(
            f"(member={escape_filter_chars(dn)})(uniqueMember={escape_filter_chars(dn)})"
            for dn in sorted(frontier)
        )
        found = {
            str(e["dn"])
            for base in bases
            for e in session.search(base, f"(&{_GROUP}(|{members}))", ["1.1"])
        }
        frontier = {dn for dn in found if dn.lower() not in seen}
        seen.update(dn.lower() for dn in found)
    return frozenset(seen)
