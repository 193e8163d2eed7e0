"""The operations role of the SQLite store (store.OpsStore): single-use signed calls,
agent status, /readyz and /metrics counts. A mixin of `SQLiteStore`, kept apart so each
module stays small; the PostgreSQL store has the same split (_pg_ops.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

from cloud.relay.store import AgentStatus, RequestState


class SQLiteOps:
    """Needs `_conn()` (this thread's connection) from the class it is mixed into."""

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError  # provided by SQLiteStore

    def use_nonce(self, agent_id: str, nonce: str, ts: float) -> bool:
        try:
            self._conn().execute(
                "INSERT INTO agent_nonces (agent_id, nonce, ts) VALUES (?, ?, ?)",
                (agent_id, nonce, ts),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def prune_nonces(self, before: float) -> int:
        cur = self._conn().execute("DELETE FROM agent_nonces WHERE ts < ?", (before,))
        return int(cur.rowcount)

    def agent_statuses(self, tenant: str, agent_group: str | None = None) -> list[AgentStatus]:
        sql = (
            "SELECT agent_id, tenant, agent_group, name, enrolled_at, last_seen, status"
            " FROM agents WHERE tenant = ? AND removed_at IS NULL"
        )
        params: tuple[Any, ...] = (tenant,)
        if agent_group is not None:
            sql += " AND agent_group = ?"
            params += (agent_group,)
        rows = self._conn().execute(sql + " ORDER BY enrolled_at, agent_id", params).fetchall()
        return [AgentStatus.from_row(row) for row in rows]

    def ping(self) -> None:
        # Take the write lock and give it back: a relay that cannot write cannot serve.
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    def request_counts(self, now: float) -> dict[str, int]:
        row = (
            self._conn()
            .execute(
                "SELECT"
                " coalesce(sum(state = 'done'), 0),"
                " coalesce(sum(state = 'leased' AND lease_expires_at > ?), 0),"
                " coalesce(sum(state <> 'done' AND NOT (state = 'leased'"
                "   AND lease_expires_at > ?) AND exp <= ?"
                "   AND (permit_lease IS NULL OR permit_reserved = 1)), 0),"
                " coalesce(sum(state <> 'done' AND NOT (state = 'leased'"
                "   AND lease_expires_at > ?) AND exp <= ? AND permit_lease IS NOT NULL"
                "   AND COALESCE(permit_reserved, 0) = 0), 0),"
                " count(*) FROM requests",
                (now, now, now, now, now),
            )
            .fetchone()
        )
        done, leased, expired, in_doubt, total = (int(v) for v in row)
        return {
            RequestState.DONE.value: done,
            RequestState.LEASED.value: leased,
            RequestState.EXPIRED.value: expired,
            RequestState.IN_DOUBT.value: in_doubt,
            RequestState.QUEUED.value: total - done - leased - expired - in_doubt,
        }

    def online_counts(self, since: float) -> list[tuple[str, str, int]]:
        rows = (
            self._conn()
            .execute(
                "SELECT tenant, agent_group, coalesce(sum(last_seen >= ?), 0) FROM agents"
                " WHERE removed_at IS NULL GROUP BY tenant, agent_group"
                " ORDER BY tenant, agent_group",
                (since,),
            )
            .fetchall()
        )
        return [(str(t), str(g), int(n)) for t, g, n in rows]
