"""Where the portal keeps state: sessions, registered methods, one-time codes.

`Store` is the seam (an ABC: a back end missing a method fails at construction);
`SqliteStore` is the embedded default; `PostgresStore` (cloud/portal/store_postgres.py,
needs the `postgres` extra) serves several portal replicas, on the relay's database
if you like. `open_store` picks one from the settings; both pass the same tests
(tests/unit/portal/test_portal_units.py runs them on each).

Nothing secret is stored in clear: one-time codes as HMAC-SHA256, security answers
as argon2 hashes, TOTP secrets encrypted (cloud/portal/crypto.py) before they get here.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.portal.settings import PortalSettings


@dataclass(frozen=True)
class Method:
    kind: str  # email | mobile_phone | app | questions
    data: dict[str, Any]
    confirmed_at: float


@dataclass(frozen=True)
class CodeCheck:
    ok: bool
    tries_left: int
    expired: bool


class Store(ABC):
    """Raises sqlite3/psycopg errors only for a broken database (a 500 page)."""

    # sessions -------------------------------------------------------------
    @abstractmethod
    def session_get(self, sid: str, now: float) -> dict[str, Any] | None: ...

    @abstractmethod
    def session_put(self, sid: str, data: dict[str, Any], expires: float) -> None: ...

    @abstractmethod
    def session_delete(self, sid: str) -> None: ...

    # methods ---------------------------------------------------------------
    @abstractmethod
    def methods(self, user_key: str) -> dict[str, Method]: ...

    @abstractmethod
    def method_put(self, user_key: str, kind: str, data: dict[str, Any], now: float) -> None: ...

    @abstractmethod
    def method_delete(self, user_key: str, kind: str) -> None: ...

    @abstractmethod
    def methods_confirm(self, user_key: str, now: float) -> None:
        """The user re-confirmed every registered method (the re-confirm period restarts)."""

    # one-time codes --------------------------------------------------------
    @abstractmethod
    def code_put(self, key: str, code_hash: str, expires: float, tries: int) -> None:
        """Replace any earlier code for `key` (session + purpose)."""

    @abstractmethod
    def code_check(self, key: str, code_hash: str, now: float) -> CodeCheck:
        """Single use: a right code is consumed; a wrong one costs a try; none left or
        expired = the code is gone."""

    @abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  sid TEXT PRIMARY KEY, data TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS methods (
  user_key TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, confirmed_at REAL NOT NULL,
  PRIMARY KEY (user_key, kind));
CREATE TABLE IF NOT EXISTS codes (
  key TEXT PRIMARY KEY, code_hash TEXT NOT NULL, expires REAL NOT NULL, tries INTEGER NOT NULL);
"""


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def session_get(self, sid: str, now: float) -> dict[str, Any] | None:
        rows = self._exec("SELECT data, expires FROM sessions WHERE sid = ?", (sid,))
        if not rows:
            return None
        if rows[0][1] < now:
            self.session_delete(sid)
            return None
        data: dict[str, Any] = json.loads(rows[0][0])
        return data

    def session_put(self, sid: str, data: dict[str, Any], expires: float) -> None:
        self._exec(
            "INSERT INTO sessions (sid, data, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (sid) DO UPDATE SET data = excluded.data, expires = excluded.expires",
            (sid, json.dumps(data, sort_keys=True), expires),
        )
        if int(time.time()) % 50 == 0:  # now and then, drop what has expired
            self._exec("DELETE FROM sessions WHERE expires < ?", (time.time(),))

    def session_delete(self, sid: str) -> None:
        self._exec("DELETE FROM sessions WHERE sid = ?", (sid,))

    def methods(self, user_key: str) -> dict[str, Method]:
        rows = self._exec(
            "SELECT kind, data, confirmed_at FROM methods WHERE user_key = ?", (user_key,)
        )
        return {kind: Method(kind, json.loads(data), at) for kind, data, at in rows}

    def method_put(self, user_key: str, kind: str, data: dict[str, Any], now: float) -> None:
        self._exec(
            "INSERT INTO methods (user_key, kind, data, confirmed_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_key, kind) DO UPDATE SET data = excluded.data, "
            "confirmed_at = excluded.confirmed_at",
            (user_key, kind, json.dumps(data, sort_keys=True), now),
        )

    def method_delete(self, user_key: str, kind: str) -> None:
        self._exec("DELETE FROM methods WHERE user_key = ? AND kind = ?", (user_key, kind))

    def methods_confirm(self, user_key: str, now: float) -> None:
        self._exec("UPDATE methods SET confirmed_at = ? WHERE user_key = ?", (now, user_key))

    def code_put(self, key: str, code_hash: str, expires: float, tries: int) -> None:
        self._exec(
            "INSERT INTO codes (key, code_hash, expires, tries) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET code_hash = excluded.code_hash, "
            "expires = excluded.expires, tries = excluded.tries",
            (key, code_hash, expires, tries),
        )

    def code_check(self, key: str, code_hash: str, now: float) -> CodeCheck:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute(
                    "SELECT code_hash, expires, tries FROM codes WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    return CodeCheck(False, 0, True)
                stored, expires, tries = row
                if expires < now or tries <= 0:
                    cur.execute("DELETE FROM codes WHERE key = ?", (key,))
                    return CodeCheck(False, 0, True)
                if hmac.compare_digest(stored, code_hash):
                    cur.execute("DELETE FROM codes WHERE key = ?", (key,))
                    return CodeCheck(True, tries, False)
                left = tries - 1
                if left <= 0:
                    cur.execute("DELETE FROM codes WHERE key = ?", (key,))
                else:
                    cur.execute("UPDATE codes SET tries = ? WHERE key = ?", (left, key))
                return CodeCheck(False, left, False)
            finally:
                cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class DatabaseUnavailable(RuntimeError):
    """The store could not be opened; the message names the database, never a secret."""


def open_store(settings: PortalSettings) -> Store:
    """PostgreSQL when `database_url` is set, else the SQLite file in `data_dir`.
    (psycopg is imported only then: the SQLite portal does not need it.)"""
    if settings.database_url is None:
        return SqliteStore(settings.data_dir / "portal.sqlite3")
    from cloud.pg_store import open_errors
    from cloud.portal.store_postgres import PostgresStore

    try:
        return PostgresStore(settings.database_url.get_secret_value(),
                             max_connections=settings.db_pool_size)
    except open_errors() as exc:
        raise DatabaseUnavailable(
            f"cannot open {settings.database_label()}: {type(exc).__name__}: {exc}"
        ) from exc
