"""SQLite implementation of `RelayStore`: the embedded default, one file, WAL mode.

Why it looks like this:
- One connection per thread, in autocommit mode with explicit `BEGIN IMMEDIATE` for
  multi-statement transactions, so a writer takes the write lock up front instead of
  failing to upgrade a read snapshot (SQLITE_BUSY_SNAPSHOT) half way.
- The relay runs its store calls on the event loop itself (`run_inline`: a call costs
  less CPU than the hop to a thread and back), and those that would wait for the
  write lock held by another process, the prune and the WAL checkpoint on ONE
  database thread (`store_threads`). SQLite takes one writer at a time anyway,
  and in WAL mode a connection drops its whole page cache whenever another
  connection wrote: with 8 threads taking turns nearly every call started cold (about
  37 page reads per HTTP call, measured) and writers slept in the busy handler
  waiting for each other. One writing connection keeps its cache warm and never
  waits for a lock held in this process; `busy_timeout` only matters for another
  process (an admin command) holding the lock, and then only that thread waits, not
  the event loop.
- `lease` is a compare-and-set: read a few candidates without locks, then
  `UPDATE ... WHERE <still leasable> RETURNING envelope`. Only one UPDATE can win a
  row, even across processes sharing the file. PostgreSQL does the same job with
  `FOR UPDATE SKIP LOCKED`; the SQL here sticks to what both understand (no
  INSERT OR IGNORE, no SQLite date functions; times are REAL unix seconds).
- `busy_timeout` lets writers queue for the lock instead of erroring.
- `permit` and `complete` run in `BEGIN IMMEDIATE`: the write lock serialises every
  permit decision across threads and processes, so two permits for one user key are
  never open at once. Each request carries its submit sequence number (`seq`, from
  the `counters` row, never reused after a prune) and its permit: user key, the lease
  and agent that hold it, until when (`permit_until`, the holder's lease expiry) and
  when it closed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cloud.relay._sqlite_ops import SQLiteOps
from cloud.relay._sqlite_queue import (
    HOT_PATH_INDEXES,
    PERMIT_COLUMNS,
    PERMIT_INDEX,
    SQLiteQueue,
)
from cloud.relay.store import (
    AgentRecord,
    DuplicateError,
    EnrollmentError,
    NotFoundError,
    PortalKey,
    RelayStore,
)

T = TypeVar("T")

# SQLITE_BUSY, SQLITE_LOCKED: the call would have had to wait for another connection.
_LOCK_WAITS = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS portal_keys (
    tenant TEXT NOT NULL REFERENCES tenants(tenant),
    kid TEXT NOT NULL,
    public_key TEXT NOT NULL,
    not_before REAL,
    not_after REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant, kid)
);
CREATE TABLE IF NOT EXISTS enrollment_codes (
    code_hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(tenant),
    agent_group TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    used_at REAL,
    agent_id TEXT
);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(tenant),
    agent_group TEXT NOT NULL,
    name TEXT NOT NULL,
    public_keys TEXT NOT NULL,
    sign_key TEXT NOT NULL,
    enrolled_at REAL NOT NULL,
    last_seen REAL,
    status TEXT,
    removed_at REAL
);
CREATE INDEX IF NOT EXISTS agents_by_group ON agents (tenant, agent_group);
CREATE TABLE IF NOT EXISTS requests (
    tenant TEXT NOT NULL,
    request_id TEXT NOT NULL,
    agent_group TEXT NOT NULL,
    envelope BLOB NOT NULL,
    exp REAL NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    lease_id TEXT UNIQUE,
    leased_by TEXT,
    lease_expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    completed_at REAL,
    PRIMARY KEY (tenant, request_id)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class SQLiteStore(SQLiteQueue, SQLiteOps, RelayStore):
    """`RelayStore` on one SQLite file. Safe to share between threads and processes."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        for name, kind in PERMIT_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
        conn.execute(PERMIT_INDEX)
        conn.executescript(HOT_PATH_INDEXES)
        conn.executescript(_OPS_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    # --- plumbing -------------------------------------------------------------------
    def warm_thread(self) -> None:
        """Open this thread's connection now (the app starts its store threads at
        start-up, so no request has to open a database file later)."""
        self._conn()

    def warm_inline(self) -> None:
        """Make this thread (the event loop's) one that may run store calls itself
        (`run_inline`): its connection never waits for the write lock (busy_timeout 0:
        a call that would wait goes to the store thread instead) and never runs a
        checkpoint, whose fsyncs would stall the loop (`checkpoint` does it on the
        store thread)."""
        conn = self._conn()
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._local.inline = True

    def run_inline(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, T | None]:
        """Run a store call on this thread if it was made an inline one (`warm_inline`)
        and the call need not wait for the write lock: (True, its result). (False,
        None): not run, or stopped at the lock before it changed anything (each store
        call is one transaction or one statement that writes; a lock wait comes at
        its start), so the caller runs it on the store thread, which waits its turn."""
        if not getattr(self._local, "inline", False):
            return False, None
        try:
            return True, fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if (exc.sqlite_errorcode & 0xFF) not in _LOCK_WAITS:
                raise
            conn = self._conn()
            if conn.in_transaction:  # a wait at COMMIT (not in WAL mode): undo it all
                conn.execute("ROLLBACK")
            return False, None

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file as far as no reader needs
        it (PASSIVE: waits for nobody); SQLite's automatic checkpoint after a commit,
        moved off the event loop's commits to the store thread."""
        self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # --- tenants and portal keys ---------------------------------------------------------
    def add_tenant(self, tenant: str, token_hash: str, now: float) -> None:
        try:
            self._conn().execute(
                "INSERT INTO tenants (tenant, token_hash, created_at) VALUES (?, ?, ?)",
                (tenant, token_hash, now),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(f"tenant {tenant!r} exists") from exc

    def tenant_for_token(self, token_hash: str) -> str | None:
        row = (
            self._conn()
            .execute("SELECT tenant FROM tenants WHERE token_hash = ?", (token_hash,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def _require_tenant(self, conn: sqlite3.Connection, tenant: str) -> None:
        if conn.execute("SELECT 1 FROM tenants WHERE tenant = ?", (tenant,)).fetchone() is None:
            raise NotFoundError(f"no tenant {tenant!r}")

    def add_portal_key(self, tenant: str, key: PortalKey, now: float) -> None:
        with self._tx() as conn:
            self._require_tenant(conn, tenant)
            try:
                conn.execute(
                    "INSERT INTO portal_keys (tenant, kid, public_key, not_before, not_after,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (tenant, key.kid, key.public_key, key.not_before, key.not_after, now),
                )
            except sqlite3.IntegrityError as exc:
                # The same key again sets its window: that is how a rotation retires
                # the old key (not_after). Another key under a used kid is refused.
                row = conn.execute(
                    "SELECT public_key FROM portal_keys WHERE tenant = ? AND kid = ?",
                    (tenant, key.kid),
                ).fetchone()
                if row is None or row[0] != key.public_key:
                    raise DuplicateError(f"portal key {key.kid!r} exists") from exc
                conn.execute(
                    "UPDATE portal_keys SET not_before = ?, not_after = ?"
                    " WHERE tenant = ? AND kid = ?",
                    (key.not_before, key.not_after, tenant, key.kid),
                )

    def portal_keys(self, tenant: str, now: float) -> list[PortalKey]:
        rows = (
            self._conn()
            .execute(
                "SELECT kid, public_key, not_before, not_after FROM portal_keys"
                " WHERE tenant = ? AND (not_after IS NULL OR not_after > ?)"
                " ORDER BY created_at, kid",
                (tenant, now),
            )
            .fetchall()
        )
        return [PortalKey(*row) for row in rows]

    # --- enrollment and agents -----------------------------------------------------------
    def add_enrollment_code(
        self, code_hash: str, tenant: str, agent_group: str, expires_at: float, now: float
    ) -> None:
        with self._tx() as conn:
            self._require_tenant(conn, tenant)
            conn.execute(
                "INSERT INTO enrollment_codes (code_hash, tenant, agent_group, expires_at,"
                " created_at) VALUES (?, ?, ?, ?, ?)",
                (code_hash, tenant, agent_group, expires_at, now),
            )

    def enroll(
        self,
        code_hash: str,
        agent_id: str,
        name: str,
        public_keys: dict[str, Any],
        sign_key: str,
        *,
        now: float,
    ) -> AgentRecord:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT tenant, agent_group, expires_at, used_at FROM enrollment_codes"
                " WHERE code_hash = ?",
                (code_hash,),
            ).fetchone()
            tenant, group = EnrollmentError.check(row, now)
            conn.execute(
                "UPDATE enrollment_codes SET used_at = ?, agent_id = ? WHERE code_hash = ?",
                (now, agent_id, code_hash),
            )
            conn.execute(
                "INSERT INTO agents (agent_id, tenant, agent_group, name, public_keys, sign_key,"
                " enrolled_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (agent_id, tenant, group, name, json.dumps(public_keys), sign_key, now, now),
            )
        return AgentRecord(agent_id, tenant, group, name, public_keys, sign_key, now, now, False)

    _AGENT_COLUMNS = (
        "agent_id, tenant, agent_group, name, public_keys, sign_key, enrolled_at, last_seen,"
        " removed_at"
    )

    @staticmethod
    def _agent(row: tuple[Any, ...]) -> AgentRecord:
        return AgentRecord(
            agent_id=row[0],
            tenant=row[1],
            agent_group=row[2],
            name=row[3],
            public_keys=json.loads(row[4]),
            sign_key=row[5],
            enrolled_at=row[6],
            last_seen=row[7],
            removed=row[8] is not None,
        )

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {self._AGENT_COLUMNS} FROM agents WHERE agent_id = ?",  # noqa: S608 constant
                (agent_id,),
            )
            .fetchone()
        )
        return None if row is None else self._agent(row)

    def list_agents(self, tenant: str, agent_group: str) -> list[AgentRecord]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {self._AGENT_COLUMNS} FROM agents"  # noqa: S608 constant columns
                " WHERE tenant = ? AND agent_group = ? AND removed_at IS NULL"
                " ORDER BY enrolled_at, agent_id",
                (tenant, agent_group),
            )
            .fetchall()
        )
        return [self._agent(row) for row in rows]

    def remove_agent(self, agent_id: str, now: float) -> None:
        with self._tx() as conn:
            row = conn.execute("SELECT 1 FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no agent {agent_id!r}")
            conn.execute(
                "UPDATE agents SET removed_at = ? WHERE agent_id = ? AND removed_at IS NULL",
                (now, agent_id),
            )
            # Its leases go back to the queue now rather than after the lease timeout.
            conn.execute(
                "UPDATE requests SET state = 'queued', lease_id = NULL, leased_by = NULL,"
                " lease_expires_at = NULL WHERE leased_by = ? AND state = 'leased'",
                (agent_id,),
            )

    def update_public_keys(self, agent_id: str, public_keys: dict[str, Any]) -> None:
        self._conn().execute(
            "UPDATE agents SET public_keys = ? WHERE agent_id = ? AND removed_at IS NULL",
            (json.dumps(public_keys, sort_keys=True), agent_id),
        )

    def touch_agent(self, agent_id: str, now: float, status: bytes | None = None) -> None:
        if status is None:
            self._conn().execute(
                "UPDATE agents SET last_seen = ? WHERE agent_id = ?", (now, agent_id)
            )
        else:
            self._conn().execute(
                "UPDATE agents SET last_seen = ?, status = ? WHERE agent_id = ?",
                (now, status.decode("utf-8", "replace"), agent_id),
            )

    def any_agent_online(self, tenant: str, agent_group: str, since: float) -> bool:
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM agents WHERE tenant = ? AND agent_group = ? AND removed_at IS NULL"
                " AND last_seen >= ? LIMIT 1",
                (tenant, agent_group, since),
            )
            .fetchone()
        )
        return row is not None

    # --- relay operations (see the matching block at the end of store.py) ------------

    # WAL readers take no lock and never wait for a writer, so the app may run reads
    # on the event loop instead of paying a thread hop (cloud/relay/deps.py `read`).
    inline_reads = True

    # How many store threads the relay runs for this store (cloud/relay/app.py): one,
    # see the module docstring.
    store_threads = 1


_OPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_nonces (
    agent_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (agent_id, nonce)
);
CREATE INDEX IF NOT EXISTS agent_nonces_by_ts ON agent_nonces (ts);
"""
