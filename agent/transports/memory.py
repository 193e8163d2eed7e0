"""In-process `Transport` for unit tests of the agent (the MockTransport of this seam).

`MemoryQueue` plays the relay: tests `put()` envelopes in and read results out.
`MemoryTransport` is one agent's view of it; several transports on one queue behave
like several agents (a lease is held by one at a time, leases time out, results are
idempotent for the same agent, write permits follow the relay's rules in
cloud/relay/store.py). Faults can be injected with `fail_next()`.
Thread-safe: the agent under test usually runs its loop in another thread.

    queue = MemoryQueue()
    transport = MemoryTransport(queue)
    rid = queue.put(envelope_bytes)
    ... run the agent with `transport` ...
    assert json.loads(queue.wait_result(rid, timeout=5))["status"] == "succeeded"
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent.transports.base import (
    RESULT_LEASE_LOST,
    RESULT_STORED,
    Lease,
    LeaseLost,
    Permit,
    TransportError,
    TransportUnavailable,
)
from wire.permits import HeldPermit, Record, UserPermits, plan_permit


@dataclass
class _Item:
    request_id: str
    envelope: bytes
    exp: float | None
    lease_id: str | None = None
    holder: str | None = None
    lease_expires_at: float = 0.0
    result: bytes | None = None
    attempts: int = 0
    seq: int = 0
    user_key: str | None = None
    ordered: bool = False
    permit_lease: str | None = None
    permit_holder: str | None = None
    permit_until: float = 0.0
    permit_closed_at: float | None = None
    permit_marker: str | None = None
    permit_reserved: bool = False
    leased_at: float | None = None
    result_lease: str | None = None

    def wrote_since(self, since: float) -> bool:
        if self.permit_lease is None or self.permit_reserved:
            return False
        last = self.permit_closed_at if self.permit_closed_at is not None else self.permit_until
        return last >= since

    def permit_open(self, now: float) -> bool:
        if self.permit_lease is None:
            return False
        if self.permit_closed_at is not None and self.permit_closed_at <= now:
            return False
        return not (self.exp is not None and self.exp <= now and self.permit_until <= now)


class MemoryQueue:
    """The queue shared by MemoryTransports (what the relay is in production)."""

    def __init__(self, *, lease_timeout: float = 30.0, clock: Callable[[], float] = time.time):
        self.lease_timeout = lease_timeout
        self.clock = clock
        self.portal_keys: list[dict[str, Any]] = []
        self.heartbeats: list[tuple[str, bytes]] = []  # (agent_id, payload)
        self.batch_posts: list[int] = []  # results per complete_many call
        self.permit_batches: list[int] = []  # permits per permit_many call
        self._items: dict[str, _Item] = {}
        self._cond = threading.Condition()

    def put(self, envelope: bytes, request_id: str | None = None, exp: float | None = None) -> str:
        """Queue an envelope. The id defaults to header.id when the bytes are a JSON
        envelope (the transport itself never needs to parse them)."""
        if request_id is None:
            try:
                request_id = str(json.loads(envelope)["header"]["id"])
            except (ValueError, KeyError, TypeError):
                request_id = str(uuid.uuid4())
        with self._cond:
            if request_id in self._items:
                raise ValueError(f"request {request_id!r} queued before")
            self._items[request_id] = _Item(request_id, envelope, exp, seq=len(self._items) + 1)
            self._cond.notify_all()
        return request_id

    def result(self, request_id: str) -> bytes | None:
        with self._cond:
            return self._items[request_id].result

    def wait_result(self, request_id: str, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (result := self._items[request_id].result) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no result for {request_id} within {timeout}s")
                self._cond.wait(remaining)
            return result

    def attempts(self, request_id: str) -> int:
        """How many times the request was leased (re-deliveries show up here)."""
        with self._cond:
            return self._items[request_id].attempts

    def pending(self) -> list[str]:
        """Ids without a result yet."""
        with self._cond:
            return [i.request_id for i in self._items.values() if i.result is None]

    # --- used by MemoryTransport ------------------------------------------------------
    def _leasable(self, item: _Item, now: float) -> bool:
        return (
            item.result is None
            and (item.exp is None or item.exp > now)
            and (item.lease_id is None or item.lease_expires_at <= now)
        )

    def _lease(self, agent_id: str, wait: float) -> Lease | None:
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                now = self.clock()
                for item in self._items.values():
                    if self._leasable(item, now):
                        item.lease_id = uuid.uuid4().hex
                        item.holder = agent_id
                        item.lease_expires_at = now + self.lease_timeout
                        item.leased_at = now
                        item.attempts += 1
                        return Lease(
                            item.lease_id, item.request_id, item.envelope, item.lease_expires_at
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Wake up now and then: a lease elsewhere may time out meanwhile.
                self._cond.wait(min(remaining, 0.05))

    def _held(self, lease: Lease, agent_id: str) -> _Item:
        item = self._items.get(lease.request_id)
        if item is None or item.lease_id != lease.lease_id or item.holder != agent_id:
            raise LeaseLost(f"lease {lease.lease_id} is not held by {agent_id}", status=409)
        return item

    def _renew(self, lease: Lease, agent_id: str) -> Lease:
        with self._cond:
            item = self._held(lease, agent_id)
            if item.result is not None:
                raise LeaseLost(f"request {lease.request_id} is completed", status=409)
            item.lease_expires_at = self.clock() + self.lease_timeout
            return replace(lease, expires_at=item.lease_expires_at)

    def _permit(
        self, lease: Lease, agent_id: str, user_key: str, ordered: bool, marker: str | None
    ) -> Permit:
        with self._cond:
            item = self._held(lease, agent_id)
            if item.result is not None:
                raise LeaseLost(f"request {lease.request_id} is completed", status=409)
            now = self.clock()
            item.lease_expires_at = now + self.lease_timeout
            held = HeldPermit(
                item.permit_lease,
                item.permit_until if item.permit_lease else None,
                item.permit_closed_at,
                item.permit_marker,
                item.permit_reserved,
            )
            plan = plan_permit(
                held,
                self._user_permits(item, user_key, now),
                lease_id=lease.lease_id,
                leased_at=item.leased_at,
                ordered=ordered,
                marker=marker,
                now=now,
            )
            if plan.record in (Record.GRANT, Record.RESERVE):
                item.user_key, item.ordered = user_key, ordered
                item.permit_lease, item.permit_holder = lease.lease_id, agent_id
                item.permit_until = item.lease_expires_at
                item.permit_closed_at, item.permit_marker = None, marker
                item.permit_reserved = plan.record is Record.RESERVE
            elif plan.record is Record.CLOSE_IN_DOUBT:
                item.permit_closed_at = plan.close_at
            renewed = replace(lease, expires_at=item.lease_expires_at)
            return Permit(plan.decision, renewed, self.lease_timeout)

    def _user_permits(self, item: _Item, user_key: str, now: float) -> UserPermits:
        others = [
            other
            for other in self._items.values()
            if other is not item and other.user_key == user_key and other.permit_lease
        ]
        return UserPermits(
            newer_permitted=lambda: any(o.ordered and o.seq > item.seq for o in others),
            open_permit=lambda: any(o.permit_open(now) for o in others),
            wrote_since=lambda since: any(o.wrote_since(since) for o in others),
        )

    def _release(self, lease: Lease, agent_id: str) -> None:
        with self._cond:
            item = self._held(lease, agent_id)
            if item.result is not None:
                raise LeaseLost(f"request {lease.request_id} is completed", status=409)
            item.lease_id = item.holder = None
            item.lease_expires_at = 0.0
            if item.permit_reserved:  # a reservation never licensed a write
                item.permit_lease = item.permit_holder = None
                item.permit_reserved = False
            self._cond.notify_all()

    def _complete(self, lease: Lease, agent_id: str, result: bytes) -> None:
        with self._cond:
            item = self._items.get(lease.request_id)
            # The permit's holder may answer after its lease was lost: its answer is the truth.
            if (
                item is not None
                and item.result is None
                and item.permit_lease == lease.lease_id
                and item.permit_holder == agent_id
            ):
                holder = True
            else:
                item = self._held(lease, agent_id)
                holder = False
                if item.result is not None and item.result_lease != lease.lease_id:
                    raise LeaseLost(f"request {lease.request_id} is answered already", status=409)
            if item.result is None:
                item.result_lease = lease.lease_id
                now = self.clock()
                item.result = bytes(result)
                if holder:
                    item.permit_closed_at = now
                elif item.permit_lease is not None and item.permit_closed_at is None:
                    item.permit_closed_at = max(now, item.permit_until)
                self._cond.notify_all()


class MemoryTransport:
    """One agent's `Transport` onto a MemoryQueue (a private queue when none is given)."""

    def __init__(self, queue: MemoryQueue | None = None, agent_id: str = "memory-agent") -> None:
        self.queue = queue if queue is not None else MemoryQueue()
        self.agent_id = agent_id
        self.closed = False
        self._faults: list[TransportError] = []
        self._faults_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryTransport(agent_id={self.agent_id!r})"

    def fail_next(self, error: TransportError | None = None, times: int = 1) -> None:
        """The next `times` calls raise `error` (default: TransportUnavailable)."""
        with self._faults_lock:
            self._faults.extend([error or TransportUnavailable("injected fault")] * times)

    def _enter(self) -> None:
        if self.closed:
            raise TransportError("transport is closed")
        with self._faults_lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            raise fault

    def lease(self, wait: float) -> Lease | None:
        self._enter()
        return self.queue._lease(self.agent_id, max(0.0, wait))

    def renew(self, lease: Lease) -> Lease:
        self._enter()
        return self.queue._renew(lease, self.agent_id)

    def permit(
        self, lease: Lease, user_key: str, *, ordered: bool, marker: str | None = None
    ) -> Permit:
        self._enter()
        return self.queue._permit(lease, self.agent_id, user_key, ordered, marker)

    def permit_many(
        self, asks: Sequence[tuple[Lease, str, bool, str | None]]
    ) -> list[Permit | None]:
        """As the relay's batch permit call: each decided as by `permit`, None when lost."""
        self._enter()
        answers: list[Permit | None] = []
        for lease, user_key, ordered, marker in asks:
            try:
                answers.append(
                    self.queue._permit(lease, self.agent_id, user_key, ordered, marker)
                )
            except LeaseLost:
                answers.append(None)
        with self.queue._cond:
            self.queue.permit_batches.append(len(asks))
        return answers

    def release(self, lease: Lease) -> None:
        self._enter()
        self.queue._release(lease, self.agent_id)

    def complete(self, lease: Lease, result: bytes) -> None:
        self._enter()
        self.queue._complete(lease, self.agent_id, result)

    def complete_many(self, results: Sequence[tuple[Lease, bytes]]) -> list[str]:
        self._enter()  # an injected fault fails the whole call, as a dropped HTTP call
        outcomes: list[str] = []
        for lease, result in results:
            try:
                self.queue._complete(lease, self.agent_id, result)
                outcomes.append(RESULT_STORED)
            except LeaseLost:
                outcomes.append(RESULT_LEASE_LOST)
        with self.queue._cond:
            self.queue.batch_posts.append(len(results))
        return outcomes

    def heartbeat(self, payload: bytes) -> None:
        self._enter()
        with self.queue._cond:
            self.queue.heartbeats.append((self.agent_id, bytes(payload)))

    def portal_keys(self) -> list[dict[str, Any]]:
        self._enter()
        with self.queue._cond:
            return [dict(k) for k in self.queue.portal_keys]

    def close(self) -> None:
        self.closed = True
