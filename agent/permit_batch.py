"""Write permits asked together (relay.permit_batch > 1): the permits workers ask for
while another worker's permit call is in flight go to the relay in one call
(POST /v1/agent/permits) as soon as that call returns. A worker that finds no call in
flight sends with whatever is queued: at once when no other request is being worked
on (a lone request never waits), else after waiting up to `linger` (5 ms) for the
others still working towards their permit, like the lease dispatcher
(agent/idle_workers.py) and the result poster. A permit asked alone goes over the
single permit call, as without batching.

The fence is the relay's and does not change: each permit of a batch is decided by
the same store transaction as a single permit call, and each worker gets exactly
what the single call would have given it (the Permit, LeaseLost, or the call's
TransportError), so agent/permits.py waits out BUSY and retries as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.backlog import DirectoryBacklog, wait_while
from agent.transports.base import Lease, LeaseLost, Permit, Transport, TransportError


@dataclass
class _Ask:
    lease: Lease
    key: str
    ordered: bool
    marker: str | None
    directory: str | None  # the one the write goes to (its backlog may hold the ask)
    wake: threading.Condition  # this worker's own: woken when answered, or to send next
    permit: Permit | None = None
    error: TransportError | None = None
    done: bool = False

    def answer(self) -> Permit:
        if self.error is not None:
            raise self.error
        assert self.permit is not None  # noqa: S101  # done without error means a permit
        return self.permit


def _copy(exc: TransportError) -> TransportError:
    """One exception object per worker (each raises its own)."""
    return type(exc)(str(exc), code=exc.code, status=exc.status)


class PermitBatcher:
    """Shared by the workers; each asks through its own transport (the one that sends
    a batch is the worker that found no call in flight)."""

    def __init__(
        self,
        most: int = 16,
        *,
        working: Callable[[], int] = lambda: 0,
        linger: float = 0.005,
        backlog: DirectoryBacklog | None = None,
    ) -> None:
        self._most = max(1, min(most, 16))  # the relay takes up to 16 per call
        self._working = working  # requests being worked on now (each may ask a permit)
        self._linger = linger
        # One lock; each waiting worker has its own condition on it, so an answer or a
        # turn to send wakes only the worker it is for (a shared notify_all woke every
        # waiting worker at each ask: up to 15 futile wake-ups per permit at 16 at work).
        self._lock = threading.Lock()
        self._company = threading.Condition(self._lock)  # the lingering sender's
        self._queue: list[_Ask] = []
        self._sending = False
        self._backlog = backlog if backlog is not None else DirectoryBacklog(0)
        self._backlog.listen(self._company)  # only a lingering sender waits on it

    def permit(
        self,
        transport: Transport,
        lease: Lease,
        user_key: str,
        *,
        ordered: bool,
        marker: str | None = None,
    ) -> Permit:
        ask = _Ask(
            lease, user_key, ordered, marker, self._backlog.current(),
            threading.Condition(self._lock),
        )
        with self._lock:
            self._queue.append(ask)
            self._company.notify()  # a lingering sender may be waiting for company
        while True:
            with self._lock:
                while self._sending and not ask.done:
                    ask.wake.wait()
                if ask.done:
                    return ask.answer()
                self._sending = True
                self._gather()
                batch, self._queue = self._queue[: self._most], self._queue[self._most :]
            try:
                self._send(transport, batch)
            finally:
                with self._lock:
                    for item in batch:  # a bug in _send must not leave a worker waiting
                        if not item.done:
                            item.error = TransportError("the permit call failed")
                            item.done = True
                        item.wake.notify()
                    self._sending = False
                    if self._queue:  # the oldest ask still queued sends the next call
                        self._queue[0].wake.notify()

    def _gather(self) -> None:
        """With the lock held: wait up to `linger` while other requests being worked on
        have not asked yet (each may ask within milliseconds), so one call serves them."""
        first = time.monotonic()
        self._wait_for_company(first + self._linger, lambda: self._working() > len(self._queue))
        # Their directories busy with several writes: these would queue behind them anyway.
        backlog = self._backlog
        self._wait_for_company(
            first + backlog.hold(self._queue[0].directory),
            lambda: all(backlog.busy(ask.directory) for ask in self._queue),
        )

    def _wait_for_company(self, until: float, still: Callable[[], bool]) -> None:
        wait_while(self._company, until, lambda: len(self._queue) < self._most and still())

    def _send(self, transport: Transport, batch: list[_Ask]) -> None:
        if len(batch) == 1:  # alone: the single call, exactly as without batching
            (ask,) = batch
            try:
                ask.permit = transport.permit(
                    ask.lease, ask.key, ordered=ask.ordered, marker=ask.marker
                )
            except TransportError as exc:
                ask.error = exc
            ask.done = True
            return
        permit_many = getattr(transport, "permit_many", None)
        if permit_many is None:
            raise TransportError("this transport cannot ask for several permits in one call")
        try:
            answers: list[Permit | None] = permit_many(
                [(a.lease, a.key, a.ordered, a.marker) for a in batch]
            )
        except LeaseLost as exc:  # a 409 for the whole call is no answer about one lease
            for ask in batch:
                ask.error, ask.done = TransportError(f"permits: {exc}"), True
            return
        except TransportError as exc:
            for ask in batch:
                ask.error, ask.done = _copy(exc), True
            return
        for ask, permit in zip(batch, answers, strict=True):
            if permit is None:
                ask.error = LeaseLost(f"permit: lease {ask.lease.lease_id} is lost", status=409)
            else:
                ask.permit = permit
            ask.done = True


class BatchedPermitTransport:
    """A worker's transport whose permit calls go through the shared PermitBatcher."""

    def __init__(self, transport: Transport, batcher: PermitBatcher) -> None:
        self._transport = transport
        self._batcher = batcher

    def __repr__(self) -> str:
        return f"BatchedPermitTransport({self._transport!r})"

    def permit(
        self, lease: Lease, user_key: str, *, ordered: bool, marker: str | None = None
    ) -> Permit:
        return self._batcher.permit(
            self._transport, lease, user_key, ordered=ordered, marker=marker
        )

    def lease(self, wait: float) -> Lease | None:
        return self._transport.lease(wait)

    def renew(self, lease: Lease) -> Lease:
        return self._transport.renew(lease)

    def release(self, lease: Lease) -> None:
        self._transport.release(lease)

    def complete(self, lease: Lease, result: bytes) -> None:
        self._transport.complete(lease, result)

    def complete_many(self, results: Sequence[tuple[Lease, bytes]]) -> list[str]:
        return self._transport.complete_many(results)

    def heartbeat(self, payload: bytes) -> None:
        self._transport.heartbeat(payload)

    def portal_keys(self) -> list[dict[str, Any]]:
        return self._transport.portal_keys()

    def close(self) -> None:
        self._transport.close()
