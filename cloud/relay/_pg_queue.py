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
    PermitDecision,
    QueueStore,
    RequestState,
    RequestStatus,
    takes_over,
)

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
                "SELECT request_id, tenant, seq, permit_lease, permit_until, permit_closed_at,"
                " permit_marker FROM requests"
                " WHERE lease_id = %s AND leased_by = %s AND state = 'leased' FOR UPDATE",
                (lease_id, agent_id),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"lease {lease_id} is not held by {agent_id}")
            request_id, tenant, seq, permit_lease, permit_until, closed_at, held_marker = row
            taken_over = takes_over(
                permit_lease=permit_lease,
                lease_id=lease_id,
                held_marker=held_marker,
                marker=marker,
                permit_until=permit_until,
                now=now,
            )
            if taken_over:
                permit_lease = None  # decided as if first asked
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{len(tenant)}:{tenant}/{user_key}",),  # unambiguous whatever the tenant
            )
            conn.execute(
                "UPDATE requests SET lease_expires_at = %s WHERE lease_id = %s",
                (expires_at, lease_id),
            )
            decision = self._decide(
                conn, tenant=tenant, request_id=request_id, seq=seq, lease_id=lease_id,
                permit_lease=permit_lease, user_key=user_key, ordered=ordered, now=now,
            )
            if decision is PermitDecision.GRANTED:
                # Asked again under the same lease: the permit lasts as the lease does.
                conn.execute(
                    "UPDATE requests SET user_key = %s, ordered = %s, permit_lease = %s,"
                    " permit_agent = %s, permit_until = %s, permit_closed_at = NULL,"
                    " permit_marker = %s WHERE lease_id = %s",
                    (user_key, ordered, lease_id, agent_id, expires_at, marker, lease_id),
                )
            elif (
                decision is PermitDecision.IN_DOUBT
                and late_answer_grace > 0
                and now < float(permit_until or 0) + late_answer_grace
            ):
                decision = PermitDecision.BUSY  # the holder may still post its answer
            elif decision is PermitDecision.IN_DOUBT and closed_at is None:
                # The outcome is now recorded as in doubt; the permit still excludes
                # other writes to this user until its holder's lease has run out.
                conn.execute(
                    "UPDATE requests SET permit_closed_at = %s WHERE lease_id = %s",
                    (max(now, float(permit_until or now)), lease_id),
                )
        return Permit(decision, expires_at, taken_over and decision is PermitDecision.GRANTED)

    @staticmethod
    def _decide(
        conn: psycopg.Connection[Any],
        *,
        tenant: str,
        request_id: str,
        seq: int,
        lease_id: str,
        permit_lease: str | None,
        user_key: str,
        ordered: bool,
        now: float,
    ) -> PermitDecision:
        if permit_lease is not None:
            # Asked again under the same lease (a lost answer): the same grant.
            # Under another lease: a redelivery of a request that may be written.
            return PermitDecision.GRANTED if permit_lease == lease_id else PermitDecision.IN_DOUBT
        params = {"tenant": tenant, "user_key": user_key, "seq": seq,
                  "request_id": request_id, "now": now}
        if ordered:
            newer = conn.execute(
                "SELECT 1 FROM requests WHERE tenant = %(tenant)s AND user_key = %(user_key)s"
                " AND ordered AND permit_lease IS NOT NULL AND seq > %(seq)s LIMIT 1",
                params,
            ).fetchone()
            if newer is not None:
                return PermitDecision.SUPERSEDED
        busy = conn.execute(
            "SELECT 1 FROM requests WHERE tenant = %(tenant)s AND user_key = %(user_key)s"  # noqa: S608
            " AND request_id <> %(request_id)s AND " + _OPEN_PERMIT + " LIMIT 1",
            params,
        ).fetchone()
        return PermitDecision.BUSY if busy is not None else PermitDecision.GRANTED

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
                "SELECT state, exp, lease_expires_at, result, permit_lease FROM requests"
                " WHERE tenant = %s AND request_id = %s",
                (tenant, request_id),
            ).fetchone()
        if row is None:
            return None
        state, exp, lease_expires_at, result, permit_lease = row
        if state == "done":
            return RequestStatus(RequestState.DONE, bytes(result))
        if state == "leased" and lease_expires_at > now:
            return RequestStatus(RequestState.LEASED)
        if exp <= now:
            # Expired unanswered: certain only if no write was ever permitted.
            return RequestStatus(
                RequestState.EXPIRED if permit_lease is None else RequestState.IN_DOUBT
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
