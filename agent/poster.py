"""Result posting: in batches (relay.result_batch > 1), one call carries the results of
every worker that finished at about the same time; `post_one` posts a single result
(relay.result_batch = 1, and the answers reposted after a restart).

A worker hands its signed result to `ResultPoster.post` and goes on to its next
request: the journal already holds the answer (marked posted only once the relay has
it), so a crash loses nothing and the answer is posted again at restart. Waiting for
the relay made every worker sit out the call and the linger below, about a fifth of
its time at 16 requests outstanding. A worker waits only while `most` results are
still unsettled, so a slow relay slows the workers instead of piling answers up.
`close` posts what is queued: a stopping agent posts what it has. One thread posts;
the results that arrive while a call is in flight, or within `linger` seconds while
other requests are still being worked on, go together in the next call
(`Transport.complete_many`, up to `most` per call).

Every guarantee of posting one by one holds per result:

- the journal marks a result posted only when the relay answered "stored" for it (or
  "lease_lost": another answer is stored, so this one must never be posted again);
- a call the relay did not answer (network fault, 5xx, 429) is retried with backoff,
  each result until its lease would have expired, plus `late_post` seconds while
  the agent is not stopping (the relay takes the permit holder's late answer); the
  results that arrive meanwhile join the retry;
- a refused result (its own outcome, e.g. too_large) is logged and not retried, as
  before; a call refused as a whole for its body (413, 422) is split into one call
  per result, so one bad result cannot sink the others; any other refused call
  (401/403, 4xx) is logged for each of its results.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.backlog import DirectoryBacklog, wait_while
from agent.journal import Journal
from agent.retries import Backoff
from agent.transports.base import (
    RESULT_LEASE_LOST,
    RESULT_STORED,
    Lease,
    LeaseLost,
    Transport,
    TransportError,
    TransportUnavailable,
)

# What the relay takes in one batch call (cloud/relay/models.py ResultBatch).
MAX_BATCH = 32


@dataclass
class _Item:
    lease: Lease
    result: bytes
    directory: str | None = None  # where it was written (its backlog may hold it)
    done: threading.Event = field(default_factory=threading.Event)


class ResultPoster:
    """One posting thread for all workers; `post` queues a result and returns."""

    def __init__(
        self,
        transport_factory: Callable[[], Transport],
        journal: Journal,
        log: Any,
        *,
        stopping: Callable[[], bool],
        working: Callable[[], int],
        backoff: Callable[[], Any],
        most: int = 16,
        linger: float = 0.005,
        late_post: float = 20.0,
        backlog: DirectoryBacklog | None = None,
    ) -> None:
        self._transport_factory = transport_factory
        self._journal = journal
        self._log = log
        self._stopping = stopping
        self._working = working  # requests still in the pipeline (their results may come)
        self._backoff = backoff
        self._most = max(1, min(most, MAX_BATCH))
        self._linger = linger
        self._late_post = late_post
        self._cond = threading.Condition()
        self._queue: list[_Item] = []
        self._unsettled = 0  # queued or being posted
        self._closed = False
        self._thread: threading.Thread | None = None
        self._backlog = backlog if backlog is not None else DirectoryBacklog(0)
        self._backlog.listen(self._cond)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="result-poster", daemon=True)
        self._thread.start()

    def post(self, lease: Lease, result: bytes) -> None:
        """Queue the result to post under `lease` and return (after waiting while
        `most` results are unsettled)."""
        item = _Item(lease, result, self._backlog.current())
        with self._cond:
            while self._unsettled >= self._most and not self._closed:
                self._cond.wait()
            if self._closed:  # only after join() gave up on this worker: repost at restart
                self._log.warning(
                    "result.not_posted", request_id=lease.request_id, detail="agent stopped"
                )
                return
            self._queue.append(item)
            self._unsettled += 1
            self._cond.notify_all()

    def settled(self, timeout: float | None = None) -> bool:
        """Wait until every result handed over is stored, refused or given up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._unsettled:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Post what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        transport = self._transport_factory()
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    return
                try:
                    self._post(transport, batch)
                except Exception:  # noqa: BLE001  # a bug must not leave a worker waiting
                    self._log.exception("result.poster_failed")
                finally:
                    for item in batch:
                        item.done.set()
                    with self._cond:
                        self._unsettled -= len(batch)
                        self._cond.notify_all()
        finally:
            transport.close()

    def _next_batch(self) -> list[_Item]:
        """Wait for results (none when closed and empty); linger briefly while other
        requests are still being worked on, so their results share the call; hold
        while their directories are busy (agent/backlog.py)."""
        with self._cond:
            while not (self._queue or self._closed):
                self._cond.wait()
            first = time.monotonic()
            self._wait_while(first + self._linger, lambda: self._working() > 0)
            # Their directories busy with several more writes: those results share this call.
            backlog = self._backlog
            until = first + backlog.hold(self._queue[0].directory) if self._queue else first
            held = self._wait_while(
                until, lambda: all(backlog.busy(item.directory) for item in self._queue)
            )
            if held:  # the write that ended the hold has its result on its way
                queued, until = len(self._queue), time.monotonic() + self._linger
                self._wait_while(until, lambda: len(self._queue) == queued)
            return self._take(self._most)

    def _wait_while(self, until: float, still: Callable[[], bool]) -> bool:
        """With the lock held: wait until `until` while `still()`, the batch is not
        full and the poster not closed; whether it waited at all."""
        return wait_while(
            self._cond,
            until,
            lambda: len(self._queue) < self._most and not self._closed and still(),
        )

    def _take(self, room: int) -> list[_Item]:
        with self._cond:
            taken, self._queue = self._queue[:room], self._queue[room:]
            return taken

    def _post(self, transport: Transport, batch: list[_Item]) -> None:
        """Post `batch` (extended in place) until every item in it is settled; results
        queued meanwhile join the retries (up to `most` per call)."""
        backoff = self._backoff()
        while True:
            pending = [i for i in batch if not i.done.is_set()]
            if not pending:
                return
            try:
                outcomes = transport.complete_many([(i.lease, i.result) for i in pending])
                if len(outcomes) != len(pending):
                    raise TransportError(
                        f"relay answered {len(outcomes)} outcomes for {len(pending)} results"
                    )
            except TransportUnavailable as exc:
                if all([self._expired(i, exc) for i in pending]):  # every one checked
                    return
                backoff.wait()
                # Results that arrived meanwhile join the retry.
                live = sum(not i.done.is_set() for i in batch)
                batch.extend(self._take(self._most - live))
                continue
            except TransportError as exc:
                if len(pending) > 1 and exc.status in (413, 422):
                    # One result the relay cannot take (too large, malformed) must not
                    # sink the others: post each on its own to learn which.
                    for item in pending:
                        self._post(transport, [item])
                    return
                for item in pending:  # refused: log each, as when posted one by one
                    self._log.error(
                        "result.not_posted", request_id=item.lease.request_id, detail=str(exc)
                    )
                    item.done.set()
                return
            self._settle(list(zip(pending, outcomes, strict=True)))
            return

    def _expired(self, item: _Item, exc: TransportError) -> bool:
        """Given up on (and the worker woken) when the lease, plus the late-post
        window while the agent runs, is over."""
        late = 0.0 if self._stopping() else self._late_post
        if time.time() < item.lease.expires_at + late:
            return False
        self._log.warning(
            "result.not_posted",
            request_id=item.lease.request_id,
            detail=f"relay unreachable until the lease expired: {exc}",
        )
        item.done.set()
        return True

    def _settle(self, answered: list[tuple[_Item, str]]) -> None:
        """Journal the results the relay has (one commit for the batch), log the
        others, and wake every worker waiting on one."""
        try:
            self._journal.mark_posted(
                *(item.lease.request_id for item, outcome in answered
                  if outcome in (RESULT_STORED, RESULT_LEASE_LOST))
            )
            for item, outcome in answered:
                request_id = item.lease.request_id
                if outcome == RESULT_LEASE_LOST:  # another answer is stored
                    self._log.info("result.not_posted", request_id=request_id, detail="lease lost")
                elif outcome != RESULT_STORED:
                    self._log.error(
                        "result.not_posted",
                        request_id=request_id,
                        detail=f"the relay refused the result: {outcome}",
                    )
        finally:
            for item, _ in answered:
                item.done.set()


def post_one(
    transport: Transport,
    lease: Lease,
    result: bytes,
    *,
    journal: Journal,
    log: Any,
    stopping: Callable[[], bool],
    late_post: float,
    backoff: Backoff,
) -> None:
    """Post one result under `lease`, with the guarantees of a batch (above)."""
    while True:
        try:
            transport.complete(lease, result)
            journal.mark_posted(lease.request_id)
            return
        except LeaseLost:
            journal.mark_posted(lease.request_id)  # another answer is stored
            log.info("result.not_posted", request_id=lease.request_id, detail="lease lost")
            return
        except TransportUnavailable as exc:
            # The relay takes the permit holder's answer after the lease, until
            # another answer is stored: keep trying a while past it (a relay restart
            # outlasting the lease would otherwise turn a known answer into an
            # in_doubt from the agent the request is redelivered to).
            late = 0.0 if stopping() else late_post
            if time.time() >= lease.expires_at + late:
                log.warning(
                    "result.not_posted",
                    request_id=lease.request_id,
                    detail=f"relay unreachable until the lease expired: {exc}",
                )
                return
            backoff.wait()
        except TransportError as exc:
            log.error("result.not_posted", request_id=lease.request_id, detail=str(exc))
            return
