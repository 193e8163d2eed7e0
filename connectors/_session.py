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

A search sent ahead (`search_ahead`): the agent sends the user's lookup as soon as the
request is verified and reads the answer when it needs it, so the directory works on
the search while the agent claims and decrypts the request. The session then holds one
outstanding search; the `search` with the same arguments reads its answer, and any
other use of the session first reads and drops it (`_settle`), so the one-request,
one-answer order of a synchronous session, and the staleness poll above, hold again
before anything else is sent. Best effort: an answer that cannot be read closes the
connection, and the search is made again as if nothing had been sent ahead.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass
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

_SearchKey = tuple[str, str, tuple[str, ...], str, int]


@dataclass(frozen=True)
class _Ahead:
    """A search sent on the kept connection and not read yet: what it asked, its id.
    (Only `connection()` and `close()` replace that connection, and both drop it.)"""

    key: _SearchKey
    message_id: int


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
        self._ahead: _Ahead | None = None

    def __repr__(self) -> str:  # never the bind password
        return f"LdapSession(urls={self.settings.urls!r}, open={self._conn is not None})"

    # ----------------------------------------------------------------- lifecycle

    def connection(self) -> ldap3.Connection:
        """The bound connection: the kept one if it is still alive, else a new one
        (failover across settings.urls; plain LDAP refused before any bind)."""
        self._settle()
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
        conn, self._conn, self._ahead = self._conn, None, None
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
        """Entries only (no referrals or continuation references); the answer to the
        same search sent ahead, if there is one."""
        ahead = self._ahead
        if (
            ahead is not None
            and controls is None
            and ahead.key == (base, flt, tuple(attrs), scope, size_limit)
        ):
            self._ahead = None
            answered = self._receive(ahead)
            if answered is not None:
                return answered

        def run(conn: ldap3.Connection) -> list[dict[str, Any]]:
            response = _ldap_send.search(
                conn, base, flt, attrs, scope=scope, controls=controls, size_limit=size_limit
            )
            return _entries(response)

        return self.read(run)

    def search_ahead(
        self,
        base: str,
        flt: str,
        attrs: list[str],
        *,
        scope: str = ldap3.SUBTREE,
        size_limit: int = 0,
    ) -> None:
        """Send the search that `search` with the same arguments will read (see the
        module docstring). Never raises: on any failure nothing is outstanding and
        `search` sends it itself."""
        try:
            conn = self.connection()
            with translate_errors("search", dc=server_url(conn), refine=self._refine, conn=conn):
                message_id = _ldap_send.send_search(
                    conn, base, flt, attrs, scope=scope, size_limit=size_limit
                )
        except DirectoryUnavailable:
            self.close()
            return
        except DirectoryError:
            return  # refused before it was sent (a filter ldap3 cannot parse): `search` says so
        except Exception:  # noqa: BLE001  # best effort: `search` meets it again and says so
            self.close()
            return
        if message_id is not None:
            self._ahead = _Ahead((base, flt, tuple(attrs), scope, size_limit), message_id)

    def _receive(self, ahead: _Ahead) -> list[dict[str, Any]] | None:
        """The entries answering `ahead`; None when they cannot be had (the connection
        is then closed if it failed, and the caller searches again)."""
        conn = self._conn
        if conn is None:
            return None
        try:
            with translate_errors("search", dc=server_url(conn), refine=self._refine, conn=conn):
                return _entries(_ldap_send.receive_search(conn, ahead.message_id))
        except DirectoryUnavailable:
            self.close()
            return None
        except DirectoryError:
            return None  # an answer such as noSuchObject: the search again raises it
        except Exception:  # noqa: BLE001  # whatever it was, the search again meets it
            self.close()
            return None

    def _settle(self) -> None:
        """Read and drop the answer to a search sent ahead that no `search` asked for,
        so the session is back to nothing outstanding."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._receive(ahead)

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


def _entries(response: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in response if e.get("type") == "searchResEntry"]
