"""PostgreSQL implementation of the portal's `Store`: several portal replicas on one
database, which may be the relay's own (every table is named portal_*).

The same shape as the relay's PostgreSQL store (cloud/relay/store_postgres.py):
- psycopg 3 with a psycopg_pool pool of autocommit connections: each method is one
  statement, atomic by itself, except `code_check`, which runs
  `SELECT ... FOR UPDATE` and its DELETE/UPDATE in one transaction: two replicas
  checking the same code at once queue on the row lock, so a right code is consumed
  exactly once and every wrong try is counted.
- The schema is migrated at construction (cloud/portal/pg_migrations: versioned,
  idempotent, serialized across replicas by an advisory lock).
- The DSN is never logged or shown: `repr` names host, port and database only. Put
  the password in PGPASSFILE / PGPASSWORD or WRITEBACK_PORTAL_DATABASE_URL, not in
  portal.toml.
"""

from __future__ import annotations

import hmac
import json
import random
from typing import Any

from cloud.pg_store import PostgresConnections
from cloud.portal import pg_migrations
from cloud.portal.store import CodeCheck, Method, Store

APPLICATION_NAME = "writeback-portal"  # visible in pg_stat_activity
_SWEEP_ONE_IN = 50  # about one session write in this many drops what has expired


class PostgresStore(PostgresConnections, Store):
    """The portal's `Store` on PostgreSQL. Thread-safe; share one per process. The
    connections are cloud/pg_store.py's."""

    def __init__(
        self, dsn: str, *, min_connections: int = 1, max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            dsn, pg_migrations.PORTAL, application_name=APPLICATION_NAME,
            min_connections=min_connections, max_connections=max_connections,
            connect_timeout=connect_timeout,
        )

    # sessions -------------------------------------------------------------
    def session_get(self, sid: str, now: float) -> dict[str, Any] | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT data, expires FROM portal_sessions WHERE sid = %s", (sid,)
            ).fetchone()
        if row is None:
            return None
        if row[1] < now:
            self.session_delete(sid)
            return None
        data: dict[str, Any] = json.loads(row[0])
        return data

    def session_put(self, sid: str, data: dict[str, Any], expires: float) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO portal_sessions (sid, data, expires) VALUES (%s, %s, %s) "
                "ON CONFLICT (sid) DO UPDATE SET data = excluded.data, expires = excluded.expires",
                (sid, json.dumps(data, sort_keys=True), expires),
            )
            if random.randrange(_SWEEP_ONE_IN) == 0:  # noqa: S311 - not a secret
                conn.execute(
                    "DELETE FROM portal_sessions WHERE expires < extract(epoch FROM now())"
                )
                conn.execute("DELETE FROM portal_codes WHERE expires < extract(epoch FROM now())")

    def session_delete(self, sid: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM portal_sessions WHERE sid = %s", (sid,))

    # methods ---------------------------------------------------------------
    def methods(self, user_key: str) -> dict[str, Method]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT kind, data, confirmed_at FROM portal_methods WHERE user_key = %s",
                (user_key,),
            ).fetchall()
        return {kind: Method(kind, json.loads(data), at) for kind, data, at in rows}

    def method_put(self, user_key: str, kind: str, data: dict[str, Any], now: float) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO portal_methods (user_key, kind, data, confirmed_at) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (user_key, kind) DO UPDATE SET data = excluded.data, "
                "confirmed_at = excluded.confirmed_at",
                (user_key, kind, json.dumps(data, sort_keys=True), now),
            )

    def method_delete(self, user_key: str, kind: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "DELETE FROM portal_methods WHERE user_key = %s AND kind = %s", (user_key, kind)
            )

    def methods_confirm(self, user_key: str, now: float) -> None:
        with self._conn() as conn:
            conn.execute(
                "UPDATE portal_methods SET confirmed_at = %s WHERE user_key = %s", (now, user_key)
            )

    # one-time codes --------------------------------------------------------
    def code_put(self, key: str, code_hash: str, expires: float, tries: int) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO portal_codes (key, code_hash, expires, tries) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET code_hash = excluded.code_hash, "
                "expires = excluded.expires, tries = excluded.tries",
                (key, code_hash, expires, tries),
            )

    def code_check(self, key: str, code_hash: str, now: float) -> CodeCheck:
        # The row lock holds every other check of this code until we commit; they
        # then read what we left (fewer tries, or no row at all).
        with self._tx() as conn:
            row = conn.execute(
                "SELECT code_hash, expires, tries FROM portal_codes WHERE key = %s FOR UPDATE",
                (key,),
            ).fetchone()
            if row is None:
                return CodeCheck(False, 0, True)
            stored, expires, tries = row
            if expires < now or tries <= 0:
                conn.execute("DELETE FROM portal_codes WHERE key = %s", (key,))
                return CodeCheck(False, 0, True)
            if hmac.compare_digest(stored, code_hash):
                conn.execute("DELETE FROM portal_codes WHERE key = %s", (key,))
                return CodeCheck(True, int(tries), False)
            left = int(tries) - 1
            if left <= 0:
                conn.execute("DELETE FROM portal_codes WHERE key = %s", (key,))
            else:
                conn.execute("UPDATE portal_codes SET tries = %s WHERE key = %s", (left, key))
            return CodeCheck(False, left, False)
