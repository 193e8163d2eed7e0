"""The service account's LDAP session, one class for both connectors.

Kept open between requests: a TLS handshake and a bind per call made a reset ~70x
slower than the bare write (bench/). Owned by one connector, so by one worker thread
(ldap3 connections are not shared across threads).

Staleness: a kept connection may have died while idle (DC restart, idle timeout).
Before each use the socket is polled without blocking: in a synchronous LDAP session
nothing is due from the server between operations, so a readable socket means EOF or
a Notice of Disconnection, and the connection is replaced before anything is sent.
A read that still fails on a reused connection (a silent death) is retried once on a
fresh one; a write is never retried here (its answer may have been lost after it was
applied: WriteOutcomeUnknown, the pipeline decides).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any, TypeVar

import ldap3

from connectors import _ldap_send
from connectors._ldap import (
    Context,
    Refine,
    check_write_guard,
    close_quietly,
    open_connection,
    server_identity,
    server_url,
    translate_errors,
)
from connectors.base import (
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    DirectoryUser,
)

T = TypeVar("T")


def _alive(conn: ldap3.Connection) -> bool:
    """No round trip: open, and nothing (EOF, a disconnect notice) waiting to be read."""
    sock = getattr(conn, "socket", None)
    if conn.closed or sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed or invalid descriptor
        return False
    return not readable


class LdapSession:
    """A bound service connection, opened on first use, replaced when it went stale,
    with every ldap3 error translated (`connectors._ldap.translate_errors`)."""

    def __init__(
        self,
        settings: DirectorySettings,
        *,
        refine: Refine | None = None,
        prepare: Callable[[ldap3.Connection], None] | None = None,
    ) -> None:
        self.settings = settings
        self._refine = refine
        self._prepare = prepare
        self._conn: ldap3.Connection | None = None

    def __repr__(self) -> str:  # never the bind password
        return f"LdapSession(urls={self.settings.urls!r}, open={self._conn is not None})"

    # ----------------------------------------------------------------- lifecycle

    def connection(self) -> ldap3.Connection:
        """The bound connection: the kept one if it is still alive, else a new one
        (failover across settings.urls; plain LDAP refused before any bind)."""
        if self._conn is not None and not _alive(self._conn):
            self.close()
        if self._conn is None:
            conn = open_connection(self.settings, context="service_bind", refine=self._refine)
            if self._prepare is not None:
                self._prepare(conn)
            self._conn = conn
        return self._conn

    @property
    def dc(self) -> str:
        """The URL of the server of the current connection ("" when none is open)."""
        return server_url(self._conn) if self._conn is not None else ""

    @property
    def server(self) -> str:
        """The identity of the current connection's server (`server_identity`)."""
        return server_identity(self._conn) if self._conn is not None else ""

    def close(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def __del__(self) -> None:
        # A session dropped without close() must not leak its socket. At interpreter
        # exit anything may already be torn down: never let that surface.
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110
            pass

    # ----------------------------------------------------------------- operations

    def _once(
        self,
        context: Context,
        fn: Callable[[ldap3.Connection], T],
        guard: DirectoryUser | None = None,
    ) -> T:
        conn = self.connection()
        dc = server_url(conn)
        try:
            if guard is not None:
                check_write_guard(conn, guard.server, guard.write_by)
            with translate_errors(context, dc=dc, refine=self._refine, conn=conn):
                return fn(conn)
        except DirectoryUnavailable:
            self.close()
            raise
        except DirectoryError as exc:
            exc.dc = exc.dc or dc
            raise
        finally:
            conn.request = None  # ldap3 keeps the last request (a password) around

    def read(self, fn: Callable[[ldap3.Connection], T]) -> T:
        """A read; retried once on a fresh connection if a kept one that looked alive
        turns out dead (a silent death). A failed fresh connect is not tried twice."""
        kept = self._conn is not None and _alive(self._conn)
        try:
            return self._once("search", fn)
        except DirectoryUnavailable:
            if not kept:
                raise
            return self._once("search", fn)

    def write(
        self,
        fn: Callable[[ldap3.Connection], T],
        context: Context = "write",
        *,
        guard: DirectoryUser | None = None,
    ) -> T:
        """A write: never retried (see the module docstring). With `guard`, sent only
        to the server the user was read from and before its `write_by`."""
        return self._once(context, fn, guard)

    def search(
        self,
        base: str,
        flt: str,
        attrs: list[str],
        *,
        scope: str = ldap3.SUBTREE,
        controls: Any = None,
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Entries only (no referrals or continuation references)."""

        def run(conn: ldap3.Connection) -> list[dict[str, Any]]:
            response = _ldap_send.search(
                conn, base, flt, attrs, scope=scope, controls=controls, size_limit=size_limit
            )
            return [e for e in response if e.get("type") == "searchResEntry"]

        return self.read(run)

    def entry(self, dn: str, attrs: list[str], *, controls: Any = None) -> dict[str, Any] | None:
        """One entry by DN (a base search), or None when it is not there or not readable."""
        entries = self.search(dn, "(objectClass=*)", attrs, scope=ldap3.BASE, controls=controls)
        return entries[0] if entries else None

    def modify(
        self,
        dn: str,
        changes: dict[str, Any],
        *,
        controls: Any = None,
        context: Context = "write",
        guard: DirectoryUser | None = None,
    ) -> str:
        """One modify request; returns the URL of the server that took it."""
        dc = ""

        def run(conn: ldap3.Connection) -> None:
            nonlocal dc
            dc = server_url(conn)
            _ldap_send.modify(conn, dn, changes, controls=controls)

        self.write(run, context, guard=guard)
        return dc
