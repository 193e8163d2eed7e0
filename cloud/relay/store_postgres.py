"""PostgreSQL implementation of `RelayStore`: several relay replicas on one database.

Why it looks like this:
- psycopg 3 with a connection pool (psycopg_pool) of autocommit connections: most
  methods are ONE statement, atomic by itself and one round trip (a BEGIN/COMMIT
  pair would triple the round trips of the hot path: lease and complete). The few
  that need several statements run them in `conn.transaction()`.
- `lease` is `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1` feeding an UPDATE: concurrent
  leases from any replica skip each other's rows instead of queueing behind them or
  retrying a lost compare-and-set.
- Writes that a long-poll may wait for (a new or released request: the agents'
  lease long-poll; a result: the portal's result long-poll) call `pg_notify` in the
  same statement, so the notification goes out exactly when the row is visible.
  Every replica LISTENs (`listen`) and wakes its own waiters; the re-check interval
  of the long-polls stays the fallback when a notification is missed (listener
  reconnecting), so correctness never depends on it.
- The schema is migrated at construction (cloud/relay/pg_migrations: versioned,
  idempotent, serialized across replicas by an advisory lock).
- The DSN is never logged or shown: `repr` names host, port and database only. Put
  the password in PGPASSFILE / PGPASSWORD or the WRITEBACK_RELAY_DATABASE_URL
  environment variable, not on a command line.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "the PostgreSQL relay store needs psycopg 3 and psycopg_pool: "
        "pip install 'writeback-agent[postgres]'"
    ) from exc

import structlog

from cloud.relay import pg_migrations
from cloud.relay.notify import group_key
from cloud.relay.store import (
    Agent,
    DuplicateError,
    EnrollmentError,
    LeaseConflict,
    LeaseGrant,
    NotFoundError,
    PortalKey,
    RequestState,
    RequestStatus,
)

log = structlog.get_logger("writeback.relay")

CHANNEL = "writeback_relay_wake"
LISTENER_NAME = "writeback-relay-listen"  # application_name: visible in pg_stat_activity
# NOTIFY payloads must stay under 8000 bytes; a longer key (an absurd request id) is
# not announced and its waiter finds the change at its next re-check instead.
_MAX_PAYLOAD = 7900
# `state <> 'done'` lets the planner walk the partial index requests_pending in queue
# order and stop at the first free row, however long the backlog.
_LEASABLE = (
    "state <> 'done' AND exp > %(now)s"
    " AND (state = 'queued' OR (state = 'leased' AND lease_expires_at <= %(now)s))"
)
# (S608 noqas below: constant SQL spliced into constant SQL; values are bound.)
# The wake-up keys of cloud/relay/notify.py, built in SQL from the row that changed
# (test_store_postgres checks that they match), announced when short enough.
_GROUP_KEY_SQL = "'group:' || tenant || '/' || agent_group"
_REQUEST_KEY_SQL = "'request:' || tenant || '/' || request_id"
_ANNOUNCE = (
    "CASE WHEN octet_length(key) <= %(max_payload)s THEN pg_notify(%(channel)s, key) END"
)
_AGENT_COLUMNS = (
    "agent_id, tenant, agent_group, name, public_keys, sign_key, enrolled_at, last_seen,"
    " removed_at"
)


def open_errors() -> tuple[type[Exception], ...]:
    """What opening the store raises when the database is unreachable or too new.
    (psycopg's messages name host and port, never the password.)"""
    return (psycopg.Error, PoolTimeout, pg_migrations.SchemaTooNew)


def _agent(row: tuple[Any, ...]) -> Agent:
    return Agent(
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
    if len(key.encode("utf-8")) <= _MAX_PAYLOAD:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key))


def _announcing(**params: Any) -> dict[str, Any]:
    return {"channel": CHANNEL, "max_payload": _MAX_PAYLOAD, **params}


class PostgresStore:
    """`RelayStore` on PostgreSQL. Thread-safe; share one per process."""

    def __init__(
        self, dsn: str, *, min_connections: int = 1, max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        params = conninfo_to_dict(dsn)
        self._where = "{}:{}/{}".format(*(params.get(k, "") for k in ("host", "port", "dbname")))
        # Migrate on a plain connection first: an unreachable database fails here at
        # once with libpq's reason, instead of as a pool timeout.
        with psycopg.connect(dsn, connect_timeout=max(1, round(connect_timeout))) as conn:
            applied = pg_migrations.migrate(conn)
        if applied:
            log.info("store.migrated", versions=applied, database=self._where)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn, min_size=min_connections, max_size=max_connections, open=False,
            name="writeback-relay", timeout=30.0,
            kwargs={"autocommit": True, "application_name": "writeback-relay"},
        )
        self._pool.open(wait=True, timeout=connect_timeout)
        self._listeners: list[_Listener] = []

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection: each statement is its own transaction."""
        with self._pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction (committed at the end, rolled back on
        an exception)."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def schema_version(self) -> int:
        with self._conn() as conn:
            return pg_migrations.current_version(conn)

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
        self._pool.close()

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
    ) -> Agent:
        with self._tx() as conn:
            # FOR UPDATE: two replicas redeeming one code at once -> one wins, one sees used.
            row = conn.execute(
                "SELECT tenant, agent_group, expires_at, used_at FROM enrollment_codes"
                " WHERE code_hash = %s FOR UPDATE",
                (code_hash,),
            ).fetchone()
            if row is None:
                raise EnrollmentError("invalid_enrollment_code")
            tenant, group, expires_at, used_at = row
            if used_at is not None:
                raise EnrollmentError("enrollment_code_used")
            if expires_at <= now:
                raise EnrollmentError("enrollment_code_expired")
            conn.execute(
                "UPDATE enrollment_codes SET used_at = %s, agent_id = %s WHERE code_hash = %s",
                (now, agent_id, code_hash),
            )
            conn.execute(
                "INSERT INTO agents (agent_id, tenant, agent_group, name, public_keys, sign_key,"
                " enrolled_at, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (agent_id, tenant, group, name, json.dumps(public_keys), sign_key, now, now),
            )
        return Agent(agent_id, tenant, group, name, public_keys, sign_key, now, now, False)

    def get_agent(self, agent_id: str) -> Agent | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE agent_id = %s",  # noqa: S608 constant
                (agent_id,),
            ).fetchone()
        return None if row is None else _agent(row)

    def list_agents(self, tenant: str, agent_group: str) -> list[Agent]:
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

    # --- the queue ----------------------------------------------------------------------------
    def add_request(
        self,
        tenant: str,
        request_id: str,
        agent_group: str,
        exp: float,
        envelope: bytes,
        *,
        now: float,
    ) -> None:
        try:
            with self._conn() as conn:
                conn.execute(
                    "WITH added AS (INSERT INTO requests (tenant, request_id, agent_group,"  # noqa: S608
                    " envelope, exp, created_at, state) VALUES (%(tenant)s, %(request_id)s,"
                    " %(group)s, %(envelope)s, %(exp)s, %(now)s, 'queued')"
                    " RETURNING " + _GROUP_KEY_SQL + " AS key)"
                    " SELECT " + _ANNOUNCE + " FROM added",
                    _announcing(tenant=tenant, request_id=request_id, group=agent_group,
                                envelope=envelope, exp=exp, now=now),
                )
        except pg_errors.UniqueViolation as exc:
            raise DuplicateError(f"request {request_id!r} exists") from exc

    def lease(
        self,
        tenant: str,
        agent_group: str,
        agent_id: str,
        lease_id: str,
        *,
        now: float,
        lease_timeout: float,
    ) -> LeaseGrant | None:
        expires_at = now + lease_timeout
        with self._conn() as conn:
            row = conn.execute(
                # The scalar subquery makes the UPDATE a primary-key lookup whatever the
                # table statistics say (a join here scanned the whole tenant when stale).
                "WITH next AS (SELECT request_id FROM requests"  # noqa: S608 constant SQL
                " WHERE tenant = %(tenant)s AND agent_group = %(group)s AND " + _LEASABLE +
                " ORDER BY created_at, request_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " UPDATE requests r SET state = 'leased', lease_id = %(lease_id)s,"
                " leased_by = %(agent_id)s, lease_expires_at = %(expires_at)s,"
                " attempts = r.attempts + 1"
                " WHERE r.tenant = %(tenant)s AND r.request_id = (SELECT request_id FROM next)"
                " RETURNING r.request_id, r.envelope",
                {"tenant": tenant, "group": agent_group, "now": now, "lease_id": lease_id,
                 "agent_id": agent_id, "expires_at": expires_at},
            ).fetchone()
        if row is None:
            return None
        return LeaseGrant(lease_id, str(row[0]), tenant, bytes(row[1]), expires_at)

    def renew(self, lease_id: str, agent_id: str, now: float, lease_timeout: float) -> float:
        expires_at = now + lease_timeout
        with self._conn() as conn:
            cur = conn.execute(
                "UPDATE requests SET lease_expires_at = %s"
                " WHERE lease_id = %s AND leased_by = %s AND state = 'leased'",
                (expires_at, lease_id, agent_id),
            )
            if cur.rowcount != 1:
                raise LeaseConflict(f"lease {lease_id} is not held by {agent_id}")
        return expires_at

    def release(self, lease_id: str, agent_id: str) -> str:
        with self._conn() as conn:
            row = conn.execute(
                "WITH back AS (UPDATE requests SET state = 'queued', lease_id = NULL,"  # noqa: S608
                " leased_by = NULL, lease_expires_at = NULL WHERE lease_id = %(lease_id)s"
                " AND leased_by = %(agent_id)s AND state = 'leased'"
                " RETURNING request_id, " + _GROUP_KEY_SQL + " AS key)"
                " SELECT request_id, " + _ANNOUNCE + " FROM back",
                _announcing(lease_id=lease_id, agent_id=agent_id),
            ).fetchone()
        if row is None:
            raise LeaseConflict(f"lease {lease_id} is not held by {agent_id}")
        return str(row[0])

    def complete(
        self, lease_id: str, request_id: str, agent_id: str, result: bytes, now: float
    ) -> bool:
        with self._conn() as conn:
            row = conn.execute(
                "WITH done AS (UPDATE requests SET state = 'done', result = %(result)s,"  # noqa: S608
                " completed_at = %(now)s WHERE lease_id = %(lease_id)s"
                " AND request_id = %(request_id)s AND leased_by = %(agent_id)s"
                " AND state = 'leased' RETURNING " + _REQUEST_KEY_SQL + " AS key)"
                " SELECT 1, " + _ANNOUNCE + " FROM done",
                _announcing(result=result, now=now, lease_id=lease_id, request_id=request_id,
                            agent_id=agent_id),
            ).fetchone()
            if row is not None:
                return True
            row = conn.execute(
                "SELECT state, leased_by, request_id FROM requests WHERE lease_id = %s",
                (lease_id,),
            ).fetchone()
        if row is not None and tuple(row) == ("done", agent_id, request_id):
            return False
        raise LeaseConflict(f"lease {lease_id} is not held by {agent_id}")

    def request_status(self, tenant: str, request_id: str, now: float) -> RequestStatus | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT state, exp, lease_expires_at, result FROM requests"
                " WHERE tenant = %s AND request_id = %s",
                (tenant, request_id),
            ).fetchone()
        if row is None:
            return None
        state, exp, lease_expires_at, result = row
        if state == "done":
            return RequestStatus(RequestState.DONE, bytes(result))
        if state == "leased" and lease_expires_at > now:
            return RequestStatus(RequestState.LEASED)
        if exp <= now:
            return RequestStatus(RequestState.EXPIRED)
        return RequestStatus(RequestState.QUEUED)

    def request_tenant_group(self, lease_id: str) -> tuple[str, str, str] | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT tenant, agent_group, request_id FROM requests WHERE lease_id = %s",
                (lease_id,),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def prune(self, now: float, keep_for: float) -> int:
        cutoff = now - keep_for
        with self._conn() as conn:
            cur = conn.execute(
                "DELETE FROM requests WHERE (state = 'done' AND completed_at < %(cutoff)s)"
                " OR (state <> 'done' AND exp < %(cutoff)s"
                " AND (lease_expires_at IS NULL OR lease_expires_at < %(cutoff)s))",
                {"cutoff": cutoff},
            )
            deleted = cur.rowcount
            conn.execute("DELETE FROM enrollment_codes WHERE expires_at < %s", (cutoff,))
        return deleted


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
