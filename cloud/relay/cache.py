"""What the relay's hot path reads on every call, kept in this process for a moment.

Every portal call needs the tenant of its token, every agent call the agent's key,
every submit whether an agent is online, and every lease poll writes the agent's
presence. Read from the database each time, those cost more relay CPU than the work
itself (a thread-pool hop and a query each). Here:

- tenants by token hash and agents by id are kept for `ttl` seconds (default 2 s),
  read without a thread hop when cached, and forgotten at once when this process
  changes them (agent removed, keys updated). Another relay process sharing the
  database sees a change within `ttl`: a removed agent can authenticate there for at
  most that long (its leases are already back in the queue), a new tenant token
  works at once (misses are never cached).
- "an agent of this group is online" is remembered for `ttl` when true (a false
  answer is re-read, so a returning agent is seen at once).
- presence writes are skipped when this process wrote the same agent's presence less
  than `presence_interval` ago (presence_timeout / 6: 5 s by default), so the online
  state is never more than that behind.

Entries are bounded (`max_entries`, oldest dropped first): a flood of distinct tokens
or agent ids cannot grow memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cloud.relay.store import AgentRecord

K = TypeVar("K")
V = TypeVar("V")


class _TTLMap(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._items[key]
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self._clock() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def forget(self, key: K) -> None:
        self._items.pop(key, None)


class HotCache:
    def __init__(
        self,
        *,
        ttl: float,
        presence_interval: float,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tenants: _TTLMap[str, str] = _TTLMap(ttl, max_entries, clock)
        self._agents: _TTLMap[str, AgentRecord] = _TTLMap(ttl, max_entries, clock)
        # Never trust "online" longer than presence is written: see presence_due.
        online_ttl = min(ttl, presence_interval)
        self._online: _TTLMap[tuple[str, str], bool] = _TTLMap(online_ttl, max_entries, clock)
        self._presence: _TTLMap[str, bool] = _TTLMap(presence_interval, max_entries, clock)

    async def tenant(
        self, token_hash: str, load: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        cached = self._tenants.get(token_hash)
        if cached is not None:
            return cached
        tenant = await load()
        if tenant is not None:
            self._tenants.put(token_hash, tenant)
        return tenant

    async def agent(
        self, agent_id: str, load: Callable[[], Awaitable[AgentRecord | None]]
    ) -> AgentRecord | None:
        cached = self._agents.get(agent_id)
        if cached is not None:
            return cached
        agent = await load()
        if agent is not None:
            self._agents.put(agent_id, agent)
        return agent

    def forget_agent(self, agent_id: str) -> None:
        self._agents.forget(agent_id)
        self._presence.forget(agent_id)

    async def any_online(
        self, tenant: str, group: str, load: Callable[[], Awaitable[bool]]
    ) -> bool:
        if self._online.get((tenant, group)):
            return True
        online = await load()
        if online:
            self._online.put((tenant, group), True)
        return online

    def presence_due(self, agent_id: str) -> bool:
        """True when this agent's presence should be written now (and notes it)."""
        if self._presence.get(agent_id):
            return False
        self._presence.put(agent_id, True)
        return True
