"""The queue half of `PostgresStore`: requests, leases, write permits and results.

Split from store_postgres.py as the SQLite store splits its own (_sqlite_queue.py);
`PostgresStore` mixes it in and provides `_conn()` (an autocommit connection: one
statement, one transaction, one round trip) and `_tx()` (a transaction).

Concurrency, statement by statement (READ COMMITTED):
- `lease`: `FOR UPDATE SKIP LOCKED LIMIT 1` picks the oldest free row no other replica
  is taking; the UPDATE of that one row is the lease.
- `permit`: the request row is locked (`FOR UPDATE`), then a transaction-scoped
  advisory lock on hash(tenant, user_key) serialises every decision about one user
  across replicas. Each later statement of the transaction reads a fresh snapshot,
  so it sees every permit the previous holder of that lock committed.
- `complete`: one conditional UPDATE; its WHERE is re-checked on the newest row
  version when it waited for a concurrent writer, so two posts never both win.
- `add_request`, `release`, `complete` call `pg_notify` in the same statement: the
  wake-up goes out when, and only if, the row is committed.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

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

CHANNEL = "writeback_relay_wake"
# NOTIFY payloads must stay under 8000 bytes; a longer key (an absurd request id) is
# not announced and its waiter finds the change at its next re-check instead.
MAX_PAYLOAD = 7900

# (S608 noqas below: constant SQL spliced into constant SQL; values are bound.)
# `state <> 'done'` lets the planner walk the partial index requests_pending in queue
# order and stop at the first free row, however long the backlog.
_LEASABLE = (
    "state <> 'done' AND exp > %(now)s"
    " AND (state = 'queued' OR (state = 'leased' AND lease_expires_at <= %(now)s))"
)
# A permit that may have written at or after a time (a reservation never wrote; an
# unclosed permit could write until its time ran out).
_WROTE_SINCE = (
    "permit_lease IS NOT NULL AND NOT permit_reserved"
    " AND coalesce(permit_closed_at, permit_until) >= %(since)s"
)
# The wake-up keys of cloud/relay/notify.py, built in SQL from the row that changed
# (test_store_postgres checks that they match), announced when short enough.
_GROUP_KEY_SQL = "'group:' || tenant || '/' || agent_group"
_REQUEST_KEY_SQL = "'request:' || tenant || '/' || request_id"
_ANNOUNCE = "CASE WHEN octet_length(key) <= %(max_payload)s THEN pg_notify(%(channel)s, key) END"
# A permit is open until it is closed (result stored, or outcome recorded in doubt;
# the close time may lie ahead: the holder's lease end) and, for a request nobody
# can redeliver any more (expired), until the holder's lease ran out.
_OPEN_PERMIT = (
    "permit_lease IS NOT NULL AND (permit_closed_at IS NULL OR permit_closed_at > %(now)s)"
    " AND NOT (exp <= %(now)s AND permit_until <= %(now)s)"
)


def _user_permits(conn: psycopg.Connection[Any], params: dict[str, Any]) -> UserPermits:
    """The user's other requests, as `plan_permit` asks about them."""

    def one(where: str, **more: Any) -> bool:
        return conn.execute(
            "SELECT 1 FROM requests WHERE tenant = %(tenant)s AND user_key = %(user_key)s"  # noqa: S608
            " AND request_id <> %(request_id)s AND " + where + " LIMIT 1",
            {**params, **more},
        ).fetchone() is not None

    return UserPermits(
        newer_permitted=lambda: one("ordered AND permit_lease IS NOT NULL AND seq > %(seq)s"),
        open_permit=lambda: one(_OPEN_PERMIT),
        wrote_since=lambda since: one(_WROTE_SINCE, since=since),
    )


def _announcing(**params: Any) -> dict[str, Any]:
    return {"channel": CHANNEL, "max_payload": MAX_PAYLOAD, **params}


class PostgresQueue(QueueStore):
    """`QueueStore` on the connections its subclass provides."""

    @abstractmethod
    def _conn(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...

    @abstractmethod
    def _tx(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...

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
        # seq: the column default draws the next submit sequence number.
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
                "WITH next AS (SELECT request_id FROM requests"  # noqa: S608
                " WHERE tenant = %(tenant)s AND agent_group = %(group)s AND " + _LEASABLE +
                " ORDER BY created_at, request_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " UPDATE requests r SET state = 'leased', lease_id = %(lease_id)s,"
                " leased_by = %(agent_id)s, lease_expires_at = %(expires_at)s,"
                " leased_at = %(now)s, attempts = r.attempts + 1"
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
                " WHERE lease_id = %s AND leased_by = %s AND state = 'leased' FOR UPDATE",
                (lease_id, agent_id),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
            request_id, tenant, seq, leased_at, *permit = row
            held = HeldPermit(permit[0], permit[1], permit[2], permit[3], bool(permit[4]))
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{len(tenant)}:{tenant}/{user_key}",),  # unambiguous whatever the tenant
            )
            conn.execute(
                "UPDATE requests SET lease_expires_at = %s WHERE lease_id = %s",
                (expires_at, lease_id),
            )
            params = {"tenant": tenant, "user_key": user_key, "seq": seq,
                      "request_id": request_id, "now": now}
            plan = plan_permit(
                held,
                _user_permits(conn, params),
                lease_id=lease_id,
                leased_at=leased_at,
                ordered=ordered,
                marker=marker,
                now=now,
                late_answer_grace=late_answer_grace,
            )
            if plan.record in (Record.GRANT, Record.RESERVE):
                conn.execute(
                    "UPDATE requests SET user_key = %s, ordered = %s, permit_lease = %s,"
                    " permit_agent = %s, permit_until = %s, permit_closed_at = NULL,"
                    " permit_marker = %s, permit_reserved = %s WHERE lease_id = %s",
                    (user_key, ordered, lease_id, agent_id, expires_at, marker,
                     plan.record is Record.RESERVE, lease_id),
                )
            elif plan.record is Record.CLOSE_IN_DOUBT:
                conn.execute(
                    "UPDATE requests SET permit_closed_at = %s WHERE lease_id = %s",
                    (plan.close_at, lease_id),
                )
        return Permit(plan.decision, expires_at, plan.taken_over)

    def release(self, lease_id: str, agent_id: str) -> str:
        with self._conn() as conn:
            row = conn.execute(
                "WITH back AS (UPDATE requests SET state = 'queued', lease_id = NULL,"  # noqa: S608
                " leased_by = NULL, lease_expires_at = NULL,"
                # A reservation (RECHECK) never licensed a write: given back, it is no
                # permit at all.
                " permit_lease = CASE WHEN permit_reserved THEN NULL ELSE permit_lease END,"
                " permit_reserved = false WHERE lease_id = %(lease_id)s"
                " AND leased_by = %(agent_id)s AND state = 'leased'"
                " RETURNING request_id, " + _GROUP_KEY_SQL + " AS key)"
                " SELECT request_id, " + _ANNOUNCE + " FROM back",
                _announcing(lease_id=lease_id, agent_id=agent_id),
            ).fetchone()
        if row is None:
            raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
        return str(row[0])

    def complete(
        self, lease_id: str, request_id: str, agent_id: str, result: bytes, now: float
    ) -> bool:
        # Accepted from the lease holder, and from the permit holder after its lease
        # was lost. The holder's own answer closes its permit now; anyone else's (an
        # in_doubt for a redelivery) closes it when the holder's lease ends.
        with self._conn() as conn:
            row = conn.execute(
                "WITH done AS (UPDATE requests SET state = 'done', result = %(result)s,"  # noqa: S608
                " completed_at = %(now)s, result_lease = %(lease_id)s,"
                " permit_closed_at = CASE"
                "  WHEN permit_lease IS NULL THEN NULL"
                "  WHEN permit_lease = %(lease_id)s AND permit_agent = %(agent_id)s THEN %(now)s"
                "  ELSE coalesce(permit_closed_at, greatest(%(now)s, permit_until)) END"
                " WHERE request_id = %(request_id)s AND state <> 'done'"
                " AND ((lease_id = %(lease_id)s AND leased_by = %(agent_id)s"
                "       AND state = 'leased')"
                "  OR (permit_lease = %(lease_id)s AND permit_agent = %(agent_id)s))"
                " RETURNING " + _REQUEST_KEY_SQL + " AS key)"
                " SELECT 1, " + _ANNOUNCE + " FROM done",
                _announcing(result=result, now=now, lease_id=lease_id, request_id=request_id,
                            agent_id=agent_id),
            ).fetchone()
            if row is not None:
                return True
            row = conn.execute(
                "SELECT state, result_lease, leased_by, permit_agent FROM requests"
                " WHERE request_id = %s AND (lease_id = %s OR permit_lease = %s)",
                (request_id, lease_id, lease_id),
            ).fetchone()
        if row is not None and row[0] == "done" and row[1] == lease_id and agent_id in row[2:]:
            return False  # the same answer posted again
        raise LeaseLost(f"lease {lease_id} is not held by {agent_id} or answered already")

    def request_status(self, tenant: str, request_id: str, now: float) -> RequestStatus | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT state, exp, lease_expires_at, result,"
                " permit_lease IS NOT NULL AND NOT permit_reserved FROM requests"
                " WHERE tenant = %s AND request_id = %s",
                (tenant, request_id),
            ).fetchone()
        if row is None:
            return None
        state, exp, lease_expires_at, result, permitted = row
        if state == "done":
            return RequestStatus(RequestState.DONE, bytes(result))
        if state == "leased" and lease_expires_at > now:
            return RequestStatus(RequestState.LEASED)
        if exp <= now:
            # Expired unanswered: certain only if no write was ever permitted.
            return RequestStatus(
                RequestState.IN_DOUBT if permitted else RequestState.EXPIRED
            )
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
                " AND (lease_expires_at IS NULL OR lease_expires_at < %(cutoff)s)"
                " AND (permit_until IS NULL OR permit_until < %(cutoff)s))",
                {"cutoff": cutoff},
            )
            deleted = cur.rowcount
            conn.execute("DELETE FROM enrollment_codes WHERE expires_at < %s", (cutoff,))
        return deleted
