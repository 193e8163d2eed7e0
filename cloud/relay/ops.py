"""Operator views over the store, shared by the admin API and the CLI: the agents of a
tenant with version, last heartbeat, online state and directory health."""

from __future__ import annotations

import json

from cloud.relay.models import AgentHealth
from cloud.relay.store import AgentStatus, OpsStore


def agent_health(
    store: OpsStore, tenant: str, group: str | None, *, online_since: float
) -> list[AgentHealth]:
    return [_health(a, online_since) for a in store.agent_statuses(tenant, group)]


def _health(agent: AgentStatus, online_since: float) -> AgentHealth:
    beat: dict[str, object] = {}
    if agent.heartbeat is not None:
        try:
            parsed = json.loads(agent.heartbeat)
        except ValueError:  # a row written before heartbeats were verified
            parsed = None
        beat = parsed if isinstance(parsed, dict) else {}
    directories = beat.get("directories")
    version, sent_at, in_flight = beat.get("version"), beat.get("sent_at"), beat.get("in_flight")
    return AgentHealth(
        agent_id=agent.agent_id,
        name=agent.name,
        agent_group=agent.agent_group,
        enrolled_at=agent.enrolled_at,
        online=agent.last_seen is not None and agent.last_seen >= online_since,
        last_seen=agent.last_seen,
        version=version if isinstance(version, str) else None,
        last_heartbeat=float(sent_at) if isinstance(sent_at, int | float) else None,
        directories=directories if isinstance(directories, dict) else {},
        in_flight=in_flight if isinstance(in_flight, int) else None,
    )
