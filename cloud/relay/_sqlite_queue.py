"""The queue half of `SQLiteStore`: requests, leases, write permits and results.

Split from store_sqlite.py to keep both readable; `SQLiteStore` mixes it in and
provides `_conn()` (this thread's connection) and `_tx()` (a BEGIN IMMEDIATE block).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from cloud.relay.store import (
    DuplicateError,
    LeaseGrant,
    LeaseLost,
    Permit,
    QueueStore,
    RequestState,
    RequestStatus,
)
from wire.permits import HeldPermit, Record, UserPermits, plan_permit

# Columns added with write permits; ALTERed into databases made before them.
PERMIT_COLUMNS = (
    ("seq", "INTEGER"),
    ("user_key", "TEXT"),
    ("ordered", "INTEGER"),
    ("permit_lease", "TEXT"),
    ("permit_agent", "TEXT"),
    ("permit_until", "REAL"),
    ("permit_closed_at", "REAL"),
    ("result_lease", "TEXT"),
    ("permit_marker", "TEXT"),
    ("permit_reserved", "INTEGER"),
    ("leased_at", "REAL"),
)
PERMIT_INDEX = "CREATE INDEX IF NOT EXISTS requests_by_user ON requests (tenant, user_key)"

# The hot path's lookups, each an index search however many answered requests the
# retention hour holds (at 100 resets/s, 360,000): the lease walks the unanswered
# requests in queue order (the partial index's condition is spelled out in the lease
# query, which is how SQLite knows it may use it), an agent's result finds its
# request by its permit as well as by its lease, and the prune finds old answers by
# their time. The first index they replace, requests_queue, could not serve the
# lease's OR on state: every lease and every result scanned the whole table
# (bench/bench_relay_store.py --answered). Both stores keep the same three indexes.
HOT_PATH_INDEXES = """
DROP INDEX IF EXISTS requests_queue;
CREATE INDEX IF NOT EXISTS requests_pending
    ON requests (tenant, agent_group, created_at, request_id) WHERE state <> 'done';
CREATE INDEX IF NOT EXISTS requests_by_permit ON requests (permit_lease)
    WHERE permit_lease IS NOT NULL;
CREATE INDEX IF NOT EXISTS requests_done ON requests (completed_at) WHERE state = 'done';
"""

# A permit is open until it is closed (result stored, or outcome recorded in doubt;
# the close time may lie ahead: the holder's lease end) and, for a request nobody
# can redeliver any more (expired), until the holder's lease ran out.
_OPEN_PERMIT = (
    "permit_lease IS NOT NULL AND (permit_closed_at IS NULL OR permit_closed_at > ?)"
    " AND NOT (exp <= ? AND permit_until <= ?)"
)

# A permit that may have written at or after a time (a reservation never wrote; an
# unclosed permit could write until its time ran out).
_WROTE_SINCE = (
    "permit_lease IS NOT NULL AND COALESCE(permit_reserved, 0) = 0"
    " AND COALESCE(permit_closed_at, permit_until) >= ?"
)

# A reservation (RECHECK) never licensed a write: given back, it is no permit at all.
_DROP_RESERVATION = (
    " permit_lease = CASE WHEN permit_reserved = 1 THEN NULL ELSE permit_lease END,"
    " permit_reserved = NULL"
)

# A request can be leased when nobody holds it (or the holder's lease timed out)
# and it has not expired. Used twice: to find candidates and to guard the UPDATE.
# (Constant SQL spliced into constant SQL, values bound: the S608 noqas below.)
_LEASABLE = "exp > ? AND (state = 'queued' OR (state = 'leased' AND lease_expires_at <= ?))"
_CANDIDATES = 8


def _user_permits(
    conn: sqlite3.Connection, who: tuple[str, str, str], seq: int | None, now: float
) -> UserPermits:
    """The user's other requests, as `plan_permit` asks about them; `who` is (tenant,
    user key, this request's id). The same three questions as _pg_queue.py asks."""

    def one(where: str, *params: object) -> bool:
        row = conn.execute(
            "SELECT 1 FROM requests WHERE tenant = ? AND user_key = ? AND request_id <> ?"  # noqa: S608
            " AND " + where + " LIMIT 1",
            (*who, *params),
        ).fetchone()
        return row is not None

    return UserPermits(
        newer_permitted=lambda: one(
            "ordered = 1 AND permit_lease IS NOT NULL AND seq > ?", seq if seq is not None else 0
        ),
        open_permit=lambda: one(_OPEN_PERMIT, now, now, now),
        wrote_since=lambda since: one(_WROTE_SINCE, since),
    )


class SQLiteQueue(QueueStore):
    """`QueueStore` on the SQLite connection its subclass provides."""

    @abstractmethod
    def _conn(self) -> sqlite3.Connection: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

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
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'request_seq' RETURNING value"
            ).fetchone()
            if row is None:
                conn.execute("INSERT INTO counters (name, value) VALUES ('request_seq', 1)")
                row = (1,)
            try:
                conn.execute(
                    "INSERT INTO requests (tenant, request_id, agent_group, envelope, exp,"
                    " created_at, state, seq) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (tenant, request_id, agent_group, envelope, exp, now, int(row[0])),
                )
            except sqlite3.IntegrityError as exc:
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
        conn = self._conn()
        while True:
            candidates = conn.execute(
                "SELECT request_id FROM requests WHERE tenant = ? AND agent_group = ?"  # noqa: S608
                " AND state <> 'done' AND " + _LEASABLE
                + " ORDER BY created_at, request_id LIMIT ?",
                (tenant, agent_group, now, now, _CANDIDATES),
            ).fetchall()
            if not candidates:
                return None
            expires_at = now + lease_timeout
            for (request_id,) in candidates:
                row = conn.execute(
                    "UPDATE requests SET state = 'leased', lease_id = ?, leased_by = ?,"  # noqa: S608
                    " lease_expires_at = ?, leased_at = ?, attempts = attempts + 1"
                    " WHERE tenant = ? AND request_id = ? AND " + _LEASABLE + " RETURNING envelope",
                    (lease_id, agent_id, expires_at, now, tenant, request_id, now, now),
                ).fetchone()
                if row is not None:
                    return LeaseGrant(lease_id, request_id, tenant, bytes(row[0]), expires_at)
            # Every candidate was taken by a concurrent lease: look again.

    def renew(self, lease_id: str, agent_id: str, now: float, lease_timeout: float) -> float:
        expires_at = now + lease_timeout
        cur = self._conn().execute(
            "UPDATE requests SET lease_expires_at = ?"
            " WHERE lease_id = ? AND leased_by = ? AND state = 'leased'",
            (expires_at, lease_id, agent_id),
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
        return expires_at

    def permit(
        self,
        lease_id: str,
        agent_id: str,
        user_key: str,
        *,
        ordered: bool,
        now: float,
        lease_timeout: float,
        marker: str | None = None,
        late_answer_grace: float = 0.0,
    ) -> Permit:
        expires_at = now + lease_timeout
        with self._tx() as conn:
            row = conn.execute(
                "SELECT request_id, tenant, seq, leased_at, permit_lease, permit_until,"
                " permit_closed_at, permit_marker, permit_reserved FROM requests"
                " WHERE lease_id = ? AND leased_by = ? AND state = 'leased'",
                (lease_id, agent_id),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
            request_id, tenant, seq, leased_at, *permit = row
            held = HeldPermit(permit[0], permit[1], permit[2], permit[3], bool(permit[4]))
            conn.execute(
                "UPDATE requests SET lease_expires_at = ? WHERE lease_id = ?",
                (expires_at, lease_id),
            )
            plan = plan_permit(
                held,
                _user_permits(conn, (tenant, user_key, request_id), seq, now),
                lease_id=lease_id,
                leased_at=leased_at,
                ordered=ordered,
                marker=marker,
                now=now,
                late_answer_grace=late_answer_grace,
            )
            if plan.record in (Record.GRANT, Record.RESERVE):
                conn.execute(
                    "UPDATE requests SET user_key = ?, ordered = ?, permit_lease = ?,"
                    " permit_agent = ?, permit_until = ?, permit_closed_at = NULL,"
                    " permit_marker = ?, permit_reserved = ? WHERE lease_id = ?",
                    (
                        user_key,
                        int(ordered),
                        lease_id,
                        agent_id,
                        expires_at,
                        marker,
                        int(plan.record is Record.RESERVE),
                        lease_id,
                    ),
                )
            elif plan.record is Record.CLOSE_IN_DOUBT:
                conn.execute(
                    "UPDATE requests SET permit_closed_at = ? WHERE lease_id = ?",
                    (plan.close_at, lease_id),
                )
        return Permit(plan.decision, expires_at, plan.taken_over)

    def release(self, lease_id: str, agent_id: str) -> str:
        row = (
            self._conn()
            .execute(
                "UPDATE requests SET state = 'queued', lease_id = NULL, leased_by = NULL,"  # noqa: S608
                " lease_expires_at = NULL,"
                + _DROP_RESERVATION
                + " WHERE lease_id = ? AND leased_by = ? AND state = 'leased'"
                " RETURNING request_id",
                (lease_id, agent_id),
            )
            .fetchone()
        )
        if row is None:
            raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
        return str(row[0])

    def complete(
        self, lease_id: str, request_id: str, agent_id: str, result: bytes, now: float
    ) -> bool:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT state, lease_id, leased_by, permit_lease, permit_agent, permit_until,"
                " permit_closed_at, result_lease FROM requests"
                " WHERE request_id = ? AND (lease_id = ? OR permit_lease = ?)",
                (request_id, lease_id, lease_id),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
            state, current, leased_by, permit_lease, permit_agent, until, closed, done_by = row
            if state == "done":
                if done_by == lease_id and agent_id in {leased_by, permit_agent}:
                    return False
                raise LeaseLost(f"request {request_id} is answered already")
            holds_lease = current == lease_id and leased_by == agent_id and state == "leased"
            holds_permit = permit_lease == lease_id and permit_agent == agent_id
            if not (holds_lease or holds_permit):
                raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
            # The holder's own answer closes its permit now; anyone else's answer
            # (an in_doubt for a redelivery) closes it when the holder's lease ends.
            if permit_lease is None:
                closed_at = None
            elif holds_permit:
                closed_at = now
            else:
                closed_at = closed if closed is not None else max(now, float(until))
            conn.execute(
                "UPDATE requests SET state = 'done', result = ?, completed_at = ?,"
                " result_lease = ?, permit_closed_at = ?"
                " WHERE request_id = ? AND (lease_id = ? OR permit_lease = ?)",
                (result, now, lease_id, closed_at, request_id, lease_id, lease_id),
            )
        return True

    _STATUS_COLUMNS = (
        "state, exp, lease_expires_at, result,"
        " permit_lease IS NOT NULL AND COALESCE(permit_reserved, 0) = 0"
    )

    @staticmethod
    def _status(row: tuple[Any, ...], now: float) -> RequestStatus:
        state, exp, lease_expires_at, result, permitted = row
        if state == "done":
            return RequestStatus(RequestState.DONE, bytes(result))
        if state == "leased" and lease_expires_at > now:
            return RequestStatus(RequestState.LEASED)
        if exp <= now:
            # Expired unanswered: certain only if no write was ever permitted.
            return RequestStatus(RequestState.IN_DOUBT if permitted else RequestState.EXPIRED)
        return RequestStatus(RequestState.QUEUED)

    def request_status(self, tenant: str, request_id: str, now: float) -> RequestStatus | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {self._STATUS_COLUMNS} FROM requests"  # noqa: S608 constant columns
                " WHERE tenant = ? AND request_id = ?",
                (tenant, request_id),
            )
            .fetchone()
        )
        return None if row is None else self._status(row, now)

    def request_statuses(
        self, tenant: str, request_ids: Sequence[str], now: float
    ) -> list[RequestStatus | None]:
        """One query for all (a portal's results:wait long-poll re-reads every id it
        waits for at each wake-up)."""
        found: dict[str, RequestStatus] = {}
        ids = list(dict.fromkeys(request_ids))
        for start in range(0, len(ids), 500):  # well under SQLite's bound-variable limit
            chunk = ids[start : start + 500]
            rows = (
                self._conn()
                .execute(
                    f"SELECT request_id, {self._STATUS_COLUMNS} FROM requests"  # noqa: S608
                    " WHERE tenant = ? AND request_id IN (" + ",".join("?" * len(chunk)) + ")",
                    (tenant, *chunk),
                )
                .fetchall()
            )
            for row in rows:
                found[str(row[0])] = self._status(row[1:], now)
        return [found.get(request_id) for request_id in request_ids]

    def request_tenant_group(self, lease_id: str) -> tuple[str, str, str] | None:
        row = (
            self._conn()
            .execute(
                "SELECT tenant, agent_group, request_id FROM requests WHERE lease_id = ?",
                (lease_id,),
            )
            .fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def prune(self, now: float, keep_for: float) -> int:
        cutoff = now - keep_for
        with self._tx() as conn:
            # Two statements, so that each walks its own index (one OR scanned the
            # table on the store thread every prune interval).
            deleted = conn.execute(
                "DELETE FROM requests WHERE state = 'done' AND completed_at < ?", (cutoff,)
            ).rowcount
            deleted += conn.execute(
                "DELETE FROM requests WHERE state <> 'done' AND exp < ?"
                " AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
                " AND (permit_until IS NULL OR permit_until < ?)",
                (cutoff, cutoff, cutoff),
            ).rowcount
            conn.execute("DELETE FROM enrollment_codes WHERE expires_at < ?", (cutoff,))
        return deleted
