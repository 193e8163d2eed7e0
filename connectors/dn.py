"""Distinguished names compared the way the directory does (case- and
spacing-insensitive), for callers above the connectors that must not parse LDAP
syntax themselves (agent/scope.py)."""

from __future__ import annotations

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn


def normalize_dn(dn: str) -> tuple[tuple[str, str], ...]:
    """Case- and spacing-insensitive DN components, for comparisons. A string that is
    not a DN compares as itself (lower-cased), so it never matches a real DN."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPInvalidDnError:
        return (("", dn.strip().lower()),)
    return tuple((attr.strip().lower(), value.strip().lower()) for attr, value, _sep in parts)
