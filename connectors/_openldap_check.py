"""The rights a reset needs on OpenLDAP, verified on each DN of the write scope
without changing data.

slapd checks the ACLs of every modification of a modify (acl_check_modlist) before
applying any, and a modify is atomic: deleting values that cannot exist (a random
userPassword, a pre-epoch pwdAccountLockedTime) fails with noSuchAttribute when we may
write, insufficientAccessRights when we may not, and changes nothing either way.
pwdReset has the same ACL in a sane setup but no value that is safe to name, so it is
not probed. ACLs are per entry, so the probe runs on a user below the scope DN (the
scope entry itself when it has none yet).
"""

from __future__ import annotations

import uuid
from typing import Any

import ldap3
from ldap3.core import exceptions as lexc

from connectors._session import LdapSession
from connectors.base import CheckItem, DirectoryError

_NEVER = "19000101000000Z"
_RELAX = ("1.3.6.1.4.1.4203.666.5.12", True, None)


def _may_change(
    session: LdapSession, dn: str, changes: dict[str, Any], *, relax: bool
) -> str | None:
    """None when the service account may make these changes, else why not."""

    def probe(conn: ldap3.Connection) -> bool:
        """True on the answer a permitted probe gets: nothing to delete."""
        try:
            conn.modify(dn, changes, controls=[_RELAX] if relax else None)
        except lexc.LDAPNoSuchAttributeResult:
            return True
        return False

    try:
        permitted = session.write(probe)
    except DirectoryError as exc:  # AccessDenied names the missing right
        return exc.detail
    return None if permitted else "the probe modify unexpectedly succeeded"


def probe_rights(session: LdapSession, scope_dn: str, *, person: str) -> CheckItem:
    label = f"rights {scope_dn}"
    users = session.search(scope_dn, person, ["1.1"], size_limit=1)
    target = str(users[0]["dn"]) if users else scope_dn
    probes = (
        (
            "write userPassword, pwdAccountLockedTime",
            {
                "pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [_NEVER])],
                "userPassword": [(ldap3.MODIFY_DELETE, ["{SSHA}" + uuid.uuid4().hex])],
            },
            False,
        ),
        (
            "manage pwdFailureTime (with Relax Rules, for unlock)",
            {"pwdFailureTime": [(ldap3.MODIFY_DELETE, [_NEVER])]},
            True,
        ),
    )
    missing = [
        f"{what} ({why})"
        for what, changes, relax in probes
        if (why := _may_change(session, target, changes, relax=relax)) is not None
    ]
    if missing:
        return CheckItem(label, False, f"missing on {target}: {'; '.join(missing)}")
    return CheckItem(
        label, True, "write userPassword, pwdAccountLockedTime; manage pwdFailureTime"
    )
