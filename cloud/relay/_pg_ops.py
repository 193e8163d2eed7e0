"""The operations role of the PostgreSQL store (store.OpsStore): single-use signed
calls, agent status, /readyz and /metrics counts. A mixin of `PostgresStore`, kept
apart so each module stays small; the SQL matches store_sqlite.py's."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from cloud.relay.store import AgentStatus, RequestState


class PostgresOps:
    """Needs `_conn()` (an autocommit connection) from the class it is mixed into."""

    def _conn(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError  # provided by PostgresStore

    def use_nonce(self, agent_id: str, nonce: str, ts: float) -> bool:
        with self._conn() as conn:
            cur = conn.execute(
                "INSERT INTO agent_nonces (agent_id, nonce, ts) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (agent_id, nonce, ts),
            )
            return cur.rowcount == 1

    def prune_nonces(self, before: float) -> int:
        with self._conn() as conn:
            return int(conn.execute("DELETE FROM agent_nonces WHERE ts < %s", (before,)).rowcount)

    def agent_statuses(self, tenant: str, agent_group: str | None = None) -> list[AgentStatus]:
        sql = (
            "SELECT agent_id, tenant, agent_group, name, enrolled_at, last_seen, status"
            " FROM agents WHERE tenant = %s AND removed_at IS NULL"
        )
        params: tuple[Any, ...] = (tenant,)
        if agent_group is not None:
            sql += " AND agent_group = %s"
            params += (agent_group,)
        with self._conn() as conn:
            rows = conn.execute(sql + " ORDER BY enrolled_at, agent_id", params).fetchall()
        return [AgentStatus.from_row(row) for row in rows]

    def ping(self) -> None:
        # A write-capable round trip: a replica on a read-only standby cannot serve.
        with self._conn() as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is None or row[0]:
            raise RuntimeError("the database is read-only (a standby in recovery)")

    def request_counts(self, now: float) -> dict[str, int]:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT"
                " count(*) FILTER (WHERE state = 'done'),"
                " count(*) FILTER (WHERE state = 'leased' AND lease_expires_at > %(now)s),"
                " count(*) FILTER (WHERE state <> 'done' AND NOT (state = 'leased'"
                "   AND lease_expires_at > %(now)s) AND exp <= %(now)s"
                "   AND (permit_lease IS NULL OR permit_reserved)),"
                " count(*) FILTER (WHERE state <> 'done' AND NOT (state = 'leased'"
                "   AND lease_expires_at > %(now)s) AND exp <= %(now)s"
                "   AND permit_lease IS NOT NULL AND NOT permit_reserved),"
                " count(*) FROM requests",
                {"now": now},
            ).fetchone()
        done, leased, expired, in_doubt, total = (int(v) for v in row or (0, 0, 0, 0, 0))
        return {
            RequestState.DONE.value: done,
            RequestState.LEASED.value: leased,
            RequestState.EXPIRED.value: expired,
            RequestState.IN_DOUBT.value: in_doubt,
            RequestState.QUEUED.value: total - done - leased - expired - in_doubt,
        }

    def online_counts(self, since: float) -> list[tuple[str, str, int]]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT tenant, agent_group, count(*) FILTER (WHERE last_seen >= %s)"
                " FROM agents WHERE removed_at IS NULL GROUP BY tenant, agent_group"
                " ORDER BY tenant, agent_group",
                (since,),
            ).fetchall()
        return [(str(t), str(g), int(n)) for t, g, n in rows]

