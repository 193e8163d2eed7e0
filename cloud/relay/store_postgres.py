"""PostgreSQL implementation of `RelayStore`: several relay replicas on one database.

Why it looks like this:
- psycopg 3 with a connection pool (psycopg_pool) of autocommit connections: most
  methods are ONE statement, atomic by itself and one round trip (a BEGIN/COMMIT
  pair would triple the round trips of the hot path: lease and complete). The few
  that need several statements run them in `conn.transaction()`.
- `lease` is `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1` feeding an UPDATE: concurrent
  leases from any replica skip each other's rows instead of queueing behind them or
  retrying a lost compare-and-set. `permit` serialises the decisions about one user
  on an advisory lock of hash(tenant, user_key); the submit sequence is a PostgreSQL
  sequence all replicas share (_pg_queue.py has the queue half).
- Writes that a long-poll may wait for (a new or released request: the agents'
  lease long-poll; a result: the portal's result long-poll) call `pg_notify` in the
  same statement, so the notification goes out exactly when the row is visible.
  Every replica LISTENs (`listen`) and wakes its own waiters; the re-check interval
  of the long-polls stays the fallback when a notification is missed (listener
  reconnecting), so correctness never depends on it.
- The schema is migrated at construction (cloud/relay/pg_migrations: versioned,
  idempotent, serialized across replicas by an advisory lock); the pool, the
  migration and the check after a failover are cloud/pg_store.py, shared with the
  portal.
- The DSN is never logged or shown: `repr` names host, port and database only. Put
  the password in PGPASSFILE / PGPASSWORD or the WRITEBACK_RELAY_DATABASE_URL
  environment variable, not on a command line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "the PostgreSQL relay store needs psycopg 3 and psycopg_pool: "
        "pip install 'writeback-agent[postgres]'"
    ) from exc

import structlog

from cloud.pg_store import PostgresConnections
from cloud.relay import pg_migrations
from cloud.relay._pg_ops import PostgresOps
from cloud.relay._pg_queue import CHANNEL, MAX_PAYLOAD, PostgresQueue
from cloud.relay.notify import group_key
from cloud.relay.store import (
    AgentRecord,
    DuplicateError,
    EnrollmentError,
    NotFoundError,
    PortalKey,
    RelayStore,
)

log = structlog.get_logger("writeback.relay")

LISTENER_NAME = "writeback-relay-listen"  # application_name: visible in pg_stat_activity
_AGENT_COLUMNS = (
    "agent_id, tenant, agent_group, name, public_keys, sign_key, enrolled_at, last_seen,"
    " removed_at"
)


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


def _wake(conn: psycopg.Connection[Any], key: str) -> None:
    if len(key.encode("utf-8")) <= MAX_PAYLOAD:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key))


class PostgresStore(PostgresConnections, PostgresOps, PostgresQueue, RelayStore):
    """`RelayStore` on PostgreSQL. Thread-safe; share one per process. The connections
    are cloud/pg_store.py's; the queue half (leases, permits, results) is in
    _pg_queue.py."""

    def __init__(
        self, dsn: str, *, min_connections: int = 1, max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            dsn, pg_migrations.RELAY, application_name="writeback-relay",
            min_connections=min_connections, max_connections=max_connections,
            connect_timeout=connect_timeout,
        )
        self._dsn = dsn
        self._listeners: list[_Listener] = []

    def listen(
        self, on_key: Callable[[str], None], *, ready_timeout: float = 10.0
    ) -> Callable[[], None]:
        """Call `on_key(key)` (from a background thread) for every wake-up any replica
        sends; returns the function that stops listening. Returns once LISTEN is in
        place (or after `ready_timeout`; it keeps trying in the background), so a
        replica that reports ready does not miss the next wake-up."""
        listener = _Listener(self._dsn, on_key, self._where)
        self._listeners.append(listener)
        listener.start()
        listener.listening.wait(ready_timeout)
        return listener.stop

    def close(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        super().close()

    # --- tenants and portal keys ---------------------------------------------------------
    def add_tenant(self, tenant: str, token_hash: str, now: float) -> None:
        try:
            with self._conn() as conn:
                conn.execute(
                    "INSERT INTO tenants (tenant, token_hash, created_at) VALUES (%s, %s, %s)",
                    (tenant, token_hash, now),
                )
        except pg_errors.UniqueViolation as exc:
            raise DuplicateError(f"tenant {tenant!r} exists") from exc

    def tenant_for_token(self, token_hash: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT tenant FROM tenants WHERE token_hash = %s", (token_hash,)
            ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _require_tenant(conn: psycopg.Connection[Any], tenant: str) -> None:
        if conn.execute("SELECT 1 FROM tenants WHERE tenant = %s", (tenant,)).fetchone() is None:
            raise NotFoundError(f"no tenant {tenant!r}")

    def add_portal_key(self, tenant: str, key: PortalKey, now: float) -> None:
        with self._tx() as conn:
            self._require_tenant(conn, tenant)
            inserted = conn.execute(
                "INSERT INTO portal_keys (tenant, kid, public_key, not_before, not_after,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant, kid) DO NOTHING RETURNING 1",
                (tenant, key.kid, key.public_key, key.not_before, key.not_after, now),
            ).fetchone()
            if inserted is not None:
                return
            # The same key again sets its window (how a rotation retires the old key);
            # another key under a used kid is refused.
            row = conn.execute(
                "SELECT public_key FROM portal_keys WHERE tenant = %s AND kid = %s FOR UPDATE",
                (tenant, key.kid),
            ).fetchone()
            if row is None or row[0] != key.public_key:
                raise DuplicateError(f"portal key {key.kid!r} exists")
            conn.execute(
                "UPDATE portal_keys SET not_before = %s, not_after = %s"
                " WHERE tenant = %s AND kid = %s",
                (key.not_before, key.not_after, tenant, key.kid),
            )

    def portal_keys(self, tenant: str, now: float) -> list[PortalKey]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT kid, public_key, not_before, not_after FROM portal_keys"
                " WHERE tenant = %s AND (not_after IS NULL OR not_after > %s)"
                " ORDER BY created_at, kid",
                (tenant, now),
            ).fetchall()
        return [PortalKey(*row) for row in rows]

    # --- enrollment and agents -----------------------------------------------------------
    def add_enrollment_code(
        self, code_hash: str, tenant: str, agent_group: str, expires_at: float, now: float
    ) -> None:
        with self._tx() as conn:
            self._require_tenant(conn, tenant)
            conn.execute(
                "INSERT INTO enrollment_codes (code_hash, tenant, agent_group, expires_at,"
                " created_at) VALUES (%s, %s, %s, %s, %s)",
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
            # FOR UPDATE: two replicas redeeming one code at once -> one wins, one sees used.
            row = conn.execute(
                "SELECT tenant, agent_group, expires_at, used_at FROM enrollment_codes"
                " WHERE code_hash = %s FOR UPDATE",
                (code_hash,),
            ).fetchone()
            tenant, group = EnrollmentError.check(row, now)
            conn.execute(
                "UPDATE enrollment_codes SET used_at = %s, agent_id = %s WHERE code_hash = %s",
                (now, agent_id, code_hash),
            )
            conn.execute(
                "INSERT INTO agents (agent_id, tenant, agent_group, name, public_keys, sign_key,"
                " enrolled_at, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (agent_id, tenant, group, name, json.dumps(public_keys), sign_key, now, now),
            )
        return AgentRecord(agent_id, tenant, group, name, public_keys, sign_key, now, now, False)

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE agent_id = %s",  # noqa: S608 constant
                (agent_id,),
            ).fetchone()
        return None if row is None else _agent(row)

    def list_agents(self, tenant: str, agent_group: str) -> list[AgentRecord]:
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents"  # noqa: S608 constant columns
                " WHERE tenant = %s AND agent_group = %s AND removed_at IS NULL"
                " ORDER BY enrolled_at, agent_id",
                (tenant, agent_group),
            ).fetchall()
        return [_agent(row) for row in rows]

    def remove_agent(self, agent_id: str, now: float) -> None:
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE agents SET removed_at = coalesce(removed_at, %s) WHERE agent_id = %s"
                " RETURNING tenant, agent_group",
                (now, agent_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no agent {agent_id!r}")
            # Its leases go back to the queue now rather than after the lease timeout.
            requeued = conn.execute(
                "UPDATE requests SET state = 'queued', lease_id = NULL, leased_by = NULL,"
                " lease_expires_at = NULL WHERE leased_by = %s AND state = 'leased'"
                " RETURNING 1",
                (agent_id,),
            ).fetchall()
            if requeued:
                _wake(conn, group_key(row[0], row[1]))

    def update_public_keys(self, agent_id: str, public_keys: dict[str, Any]) -> None:
        with self._conn() as conn:
            conn.execute(
                "UPDATE agents SET public_keys = %s WHERE agent_id = %s AND removed_at IS NULL",
                (json.dumps(public_keys, sort_keys=True), agent_id),
            )

    def touch_agent(self, agent_id: str, now: float, status: bytes | None = None) -> None:
        with self._conn() as conn:
            if status is None:
                conn.execute(
                    "UPDATE agents SET last_seen = %s WHERE agent_id = %s", (now, agent_id)
                )
            else:
                conn.execute(
                    "UPDATE agents SET last_seen = %s, status = %s WHERE agent_id = %s",
                    (now, status.decode("utf-8", "replace").replace("\x00", ""), agent_id),
                )

    def any_agent_online(self, tenant: str, agent_group: str, since: float) -> bool:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT 1 FROM agents WHERE tenant = %s AND agent_group = %s"
                " AND removed_at IS NULL AND last_seen >= %s LIMIT 1",
                (tenant, agent_group, since),
            ).fetchone()
        return row is not None


class _Listener:
    """One LISTEN connection in a daemon thread; reconnects with backoff when the
    database goes away (missed wake-ups are covered by the long-polls' re-check)."""

    def __init__(self, dsn: str, on_key: Callable[[str], None], where: str) -> None:
        self._dsn = dsn
        self._on_key = on_key
        self._where = where
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-pg-listen", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10,
                                     application_name=LISTENER_NAME) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._on_key(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("store.listen_failed", database=self._where,
                            error=type(exc).__name__, retry_in=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
