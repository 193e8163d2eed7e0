"""`check()` for both connectors: the same items, in the order a request travels
(names documented in connectors/base.py). Each connector adds what only it knows:
how to read its default policy and how to verify the rights on a scope DN."""

from __future__ import annotations

from collections.abc import Callable

from connectors._ldap import is_encrypted, require_secure_transport
from connectors._session import LdapSession
from connectors.base import (
    CheckItem,
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    HealthReport,
)


def run_check(
    settings: DirectorySettings,
    session: LdapSession,
    *,
    policy: Callable[[], str | None],
    rights: Callable[[str], CheckItem],
) -> HealthReport:
    """`policy()` returns a description of the default policy (None: none configured)
    or raises; `rights(dn)` verifies the rights a reset needs under `dn`."""
    items: list[CheckItem] = []

    def report() -> HealthReport:
        return HealthReport(settings.name, tuple(items))

    try:
        require_secure_transport(settings)
    except DirectoryError as exc:
        items.append(CheckItem("transport", False, exc.detail))
        return report()  # refused before any bind: nothing below can be verified
    secure = "ldaps or StartTLS on every URL"
    items.append(
        CheckItem("transport", True, secure if not settings.allow_insecure else "allow_insecure")
    )
    try:
        conn = session.connection()
    except DirectoryUnavailable as exc:
        items.append(CheckItem("connect", False, exc.detail))
        return report()
    except DirectoryError as exc:
        items.append(CheckItem("connect", True, "a server answered"))
        items.append(CheckItem("service_bind", False, exc.detail))
        return report()
    tls = "certificate validated" if is_encrypted(conn) else "PLAIN LDAP, no TLS (allow_insecure)"
    items.append(CheckItem("connect", True, f"{session.dc}: {tls}"))
    items.append(CheckItem("service_bind", True, f"bound as {settings.bind_dn}"))
    for base in settings.base_dns:
        try:
            found = session.entry(base, ["1.1"]) is not None
            items.append(
                CheckItem(f"search_base {base}", found, "readable" if found else "not found")
            )
        except DirectoryError as exc:
            items.append(CheckItem(f"search_base {base}", False, exc.detail))
    try:
        described = policy()
        if described is not None:
            items.append(CheckItem("password_policy", True, described))
    except DirectoryError as exc:
        items.append(CheckItem("password_policy", False, exc.detail))
    for dn in settings.write_scope:
        try:
            items.append(rights(dn))
        except DirectoryError as exc:
            items.append(CheckItem(f"rights {dn}", False, exc.detail))
    return report()
