"""The rights a reset needs, verified on each DN of the write scope (AD / Samba AD).

What an administrator delegates is a set of inheritable ACEs on the OUs in scope, for
user objects: the Reset Password extended right and write on lockoutTime and
pwdLastSet. So that is what is verified: the container's own DACL (read with the SD
flags control, DACL only, which READ_CONTROL allows), evaluated for a user object
below it against the service account's SIDs (rootDSE tokenGroups). The verdict does
not depend on which user a search happens to return first, and it names the OU and
the right that is missing.

The attributes' schemaIDGUIDs and property sets (an ACE may grant a whole property
set, e.g. User-Account-Restrictions for pwdLastSet) are read from the schema once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from ldap3.protocol.microsoft import security_descriptor_control

from connectors._ad_rights import (
    CONTROL_ACCESS,
    RESET_PASSWORD,
    WRITE_PROPERTY,
    grants_to_children,
    sid_to_str,
)
from connectors._ldap import first_value
from connectors._session import LdapSession
from connectors.base import CheckItem

_ATTRIBUTES = ("lockoutTime", "pwdLastSet")
_DACL_ONLY = 0x04


class ScopeRights:
    """`check(dn)`: one `rights <dn>` item. Reads the token and the schema once."""

    def __init__(self, session: LdapSession, root_dse: Callable[[], dict[str, Any]]) -> None:
        self._session = session
        self._root_dse = root_dse
        self._sids: set[str] | None = None
        self._attr_guids: dict[str, set[uuid.UUID]] | None = None

    def _token(self) -> set[str]:
        if self._sids is None:
            entry = self._session.entry("", ["tokenGroups"])
            raw = (entry or {}).get("raw_attributes", {}).get("tokenGroups") or []
            self._sids = {sid_to_str(s) for s in raw}
        return self._sids

    def _guids(self) -> dict[str, set[uuid.UUID]]:
        """Attribute -> {its schemaIDGUID, its property set's GUID}."""
        if self._attr_guids is None:
            schema = str(first_value(self._root_dse(), "schemaNamingContext"))
            names = "".join(f"(lDAPDisplayName={a})" for a in _ATTRIBUTES)
            entries = self._session.search(
                schema, f"(|{names})", ["lDAPDisplayName", "schemaIDGUID", "attributeSecurityGUID"]
            )
            guids: dict[str, set[uuid.UUID]] = {a: set() for a in _ATTRIBUTES}
            for entry in entries:
                name = str(first_value(entry["attributes"], "lDAPDisplayName"))
                for attr in ("schemaIDGUID", "attributeSecurityGUID"):
                    for raw in entry["raw_attributes"].get(attr) or []:
                        if len(raw) == 16:
                            guids.setdefault(name, set()).add(uuid.UUID(bytes_le=raw))
            self._attr_guids = guids
        return self._attr_guids

    def check(self, dn: str) -> CheckItem:
        label = f"rights {dn}"
        entry = self._session.entry(
            dn, ["nTSecurityDescriptor"], controls=security_descriptor_control(sdflags=_DACL_ONLY)
        )
        if entry is None:
            return CheckItem(label, False, "not found or not readable")
        sd = (entry["raw_attributes"].get("nTSecurityDescriptor") or [b""])[0]
        if not sd:
            return CheckItem(label, False, "its security descriptor is not readable (READ_CONTROL)")
        sids = self._token()
        missing: list[str] = []
        if not grants_to_children(
            sd, sids, access=CONTROL_ACCESS, object_types={RESET_PASSWORD}
        ):
            missing.append("Reset Password")
        for attr, guids in self._guids().items():
            if not guids or not grants_to_children(
                sd, sids, access=WRITE_PROPERTY, object_types=guids
            ):
                missing.append(f"write {attr}")
        if missing:
            return CheckItem(
                label, False, f"not delegated on {dn} for user objects: {', '.join(missing)}"
            )
        return CheckItem(label, True, "Reset Password, write lockoutTime and pwdLastSet")
