"""The daemon: worker threads that lease requests from the relay and run the pipeline,
plus the scheduler (heartbeat, health probe, journal pruning, key expiry: agent/jobs.py) and the
localhost health/metrics endpoint.

Shutdown (SIGTERM / SIGINT / `stop()`) takes well under 2 s: workers stop leasing and
finish every request already leased (in hand, handed out by the dispatcher, or coming
back from a long-poll within a short grace) and post its result; `join` waits for the
workers with a request in hand and not for idle ones blocked in a lease long-poll
(daemon threads: the process exit closes their connections, and the relay takes no
lease for a client that has gone). Once the grace is over `join` closes the door: a
lease that arrives after that is given straight back, never started. Then the result
poster, the scheduler and the health server stop and connections close. Nothing is
lost: a request not finished is either released (redelivered at once) or, if the
process dies, its lease times out and the relay decides on the redelivery (in_doubt
for a write it interrupted, unless the write marker proves nothing was written).

Results go to the relay in batches (relay.result_batch > 1, agent/poster.py): a
worker hands its result, already in the journal, to the poster and takes its next
request; a stopping agent's poster posts what it was handed before it stops.

Relay outages are survived with exponential backoff plus jitter (capped at 30 s);
a result that cannot be posted is retried until the lease would have expired; the
journal keeps it, so a redelivery gets the same signed answer.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.backlog import DirectoryBacklog
from agent.config import Settings
from agent.connector_pool import ConnectorPool
from agent.idle_workers import IdleWorkers
from agent.jobs import PeriodicJobs
from agent.journal import Journal
from agent.outcome import Identity
from agent.permit_batch import BatchedPermitTransport, PermitBatcher
from agent.permits import Deferred, LeasePermits
from agent.pipeline import Pipeline
from agent.poster import ResultPoster, post_one
from agent.retries import Backoff
from agent.transports.base import (
    AuthenticationFailed,
    Lease,
    Transport,
    TransportError,
)
from wire.keys import AgentKeys
from wire.verify import RequestVerifier

# How long `join` gives a worker with no request in hand (it is in a lease long-poll).
_IDLE_GRACE = 0.2


# A restart posts answers the relay never acknowledged from this far back (requests
# live for minutes), trying each for this long while the relay is unreachable.
_REPOST_WINDOW = 600.0
_REPOST_TRY_SECONDS = 60.0
# A result post keeps retrying this long past the lease while the relay is unreachable.
_LATE_POST_SECONDS = 20.0


class AgentService(PeriodicJobs):
    """Worker threads leasing from the relay; the periodic jobs come from PeriodicJobs."""

    def __init__(
        self,
        settings: Settings,
        *,
        identity: Identity,
        keys: AgentKeys,
        transport_factory: Callable[[], Transport],
        pipeline: Pipeline,
        journal: Journal,
        connectors: ConnectorPool,
        log: Any,
        metrics: Any | None = None,
        health: Any | None = None,
        verifier: RequestVerifier | None = None,
        backlog: DirectoryBacklog | None = None,
    ) -> None:
        self._settings = settings
        self._backlog = backlog if backlog is not None else DirectoryBacklog(0)
        self._verifier = verifier
        self._identity = identity
        self._keys = keys
        self._transport_factory = transport_factory
        self._pipeline = pipeline
        self._journal = journal
        self._connectors = connectors
        self._log = log
        self._metrics = metrics
        self._health = health
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_flight = 0
        self._finished = 0
        self._in_flight_lock = threading.Lock()
        self._working: set[threading.Thread] = set()  # workers with a request in hand
        self._closing = False  # set by join(): no request may start any more
        self._keyring_lock = threading.Lock()  # one key or keyring file write at a time
        # Batch mode (relay.lease_batch > 1): the dispatcher leases for idle workers.
        self._handoff: queue.Queue[Lease] = queue.Queue()
        self._free = IdleWorkers(0)
        self._relay_ok = False
        self._directory_health: dict[str, bool] = {}
        self._control_transport: Transport | None = None
        self._poster: ResultPoster | None = None  # relay.result_batch > 1
        relay = settings.relay
        self._permits = (  # relay.permit_batch > 1
            PermitBatcher(
                relay.permit_batch, working=lambda: self._in_flight, backlog=self._backlog
            )
            if relay is not None and relay.permit_batch > 1
            else None
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        interrupted, to_relay = self._journal.recover()
        for request_id in interrupted:
            self._log.warning(
                "request.in_doubt", request_id=request_id, detail="interrupted by a restart"
            )
        for request_id in to_relay:
            self._log.warning("request.interrupted", request_id=request_id)
        self._control_transport = self._transport_factory()
        unposted = self._journal.unposted(_REPOST_WINDOW)
        if unposted:
            thread = threading.Thread(
                target=self._repost, args=(unposted,), name="repost", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        relay = self._settings.relay
        if relay is not None and relay.result_batch > 1:
            self._poster = ResultPoster(
                self._transport_factory,
                self._journal,
                self._log,
                stopping=self._stop.is_set,
                working=lambda: self._in_flight,
                backoff=lambda: Backoff(threading.Event(), base=0.25, cap=5.0),
                most=relay.result_batch,
                late_post=_LATE_POST_SECONDS,
                backlog=self._backlog,
            )
            self._poster.start()
        batch = relay.lease_batch if relay is not None else 1
        worker: Callable[[], None] = self._worker
        if batch > 1:
            self._free = IdleWorkers(self._settings.workers, backlog=self._backlog)
            thread = threading.Thread(
                target=self._dispatcher, args=(batch,), name="dispatcher", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            worker = self._batch_worker
        for n in range(self._settings.workers):
            thread = threading.Thread(target=worker, name=f"worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._log.info(
            "agent.started",
            agent_id=self._identity.agent_id,
            tenant=self._identity.tenant,
            agent_group=self._identity.agent_group,
            workers=self._settings.workers,
            directories=[d.name for d in self._settings.directories],
        )

    def stop(self) -> None:
        if not self._stop.is_set():
            self._log.info("agent.stopping")
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def finished(self) -> int:
        """Requests handled since start (for the idle memory trim)."""
        return self._finished

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stop() is called, at most `timeout` seconds; True once stopped.
        Not for signal handlers to end: one must never call stop() (see agent/cli.py
        `_serve`)."""
        return self._stop.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        idle_until = time.monotonic() + _IDLE_GRACE  # one grace for all idle threads
        for thread in self._threads:
            with self._in_flight_lock:
                busy = thread in self._working
            if busy:
                thread.join(remaining())
            else:  # in a long-poll (up to 30 s) or waiting for work: don't wait it out
                grace = max(0.0, idle_until - time.monotonic())
                left = remaining()
                thread.join(grace if left is None else min(grace, left))
        with self._in_flight_lock:  # from now on a lease is given back, never started
            self._closing = True
            busy_now = set(self._working)
        for thread in busy_now:  # started during the grace: finish it
            thread.join(remaining())
        if self._poster is not None:  # every worker is done: post what they handed over
            self._poster.close(remaining())
        self._connectors.close_all()
        if self._control_transport is not None:
            while True:  # handed out by the dispatcher but never started: give back now
                try:
                    self._release(self._control_transport, self._handoff.get_nowait())
                except queue.Empty:
                    break
            self._control_transport.close()
        self._journal.close()
        self._log.info("agent.stopped")

    # ------------------------------------------------------------------ workers

    def _worker(self) -> None:
        transport = self._transport_factory()
        backoff = Backoff(self._stop)
        try:
            while not self._stop.is_set():
                if self._health is not None:
                    self._health.beat()
                try:
                    lease = transport.lease(
                        self._settings.relay.lease_wait_seconds if self._settings.relay else 1.0
                    )
                except AuthenticationFailed as exc:
                    self._set_relay(False, str(exc))
                    backoff.wait()
                    continue
                except TransportError as exc:
                    self._set_relay(False, str(exc))
                    backoff.wait()
                    continue
                self._set_relay(True)
                backoff.reset()
                if lease is None:
                    continue
                if not self._take():
                    self._release(transport, lease)
                    break
                try:
                    self._process(transport, lease)
                finally:
                    with self._in_flight_lock:
                        self._working.discard(threading.current_thread())
        finally:
            transport.close()

    def _dispatcher(self, most: int) -> None:
        """One long-poll for all idle workers: lease up to `most` (and no more than
        are idle) in one call and hand them over."""
        transport = self._transport_factory()
        lease_many = getattr(transport, "lease_many", None)
        backoff = Backoff(self._stop)
        wait = self._settings.relay.lease_wait_seconds if self._settings.relay else 1.0
        try:
            while not self._stop.is_set():
                tickets = self._free.take(most, timeout=0.5)
                if not tickets:
                    continue
                try:
                    if lease_many is not None:
                        leases: list[Lease] = lease_many(wait, tickets)
                    else:
                        one = transport.lease(wait)
                        leases = [] if one is None else [one]
                except TransportError as exc:
                    self._set_relay(False, str(exc))
                    self._free.give(tickets)
                    backoff.wait()
                    continue
                except Exception:  # noqa: BLE001  # a last guard: a dead dispatcher leases nothing
                    self._log.exception("lease.dispatcher_failed")
                    self._free.give(tickets)
                    backoff.wait()
                    continue
                self._set_relay(True)
                backoff.reset()
                if tickets > len(leases):
                    self._free.give(tickets - len(leases))
                for lease in leases:
                    if self._closing:
                        self._release(transport, lease)
                    else:  # leased before join() closed the door: a worker finishes it
                        self._handoff.put(lease)
        finally:
            transport.close()

    def _batch_worker(self) -> None:
        transport = self._transport_factory()
        try:
            while not (self._stop.is_set() and self._handoff.empty()):
                if self._health is not None:
                    self._health.beat()
                try:
                    lease = self._handoff.get(timeout=0.5)
                except queue.Empty:
                    continue
                if not self._take():
                    self._release(transport, lease)
                    self._free.give()
                    continue
                try:
                    self._process(transport, lease)
                finally:
                    with self._in_flight_lock:
                        self._working.discard(threading.current_thread())
                    self._free.give()
        finally:
            transport.close()

    def _take(self) -> bool:
        """Claim a leased request for this thread, unless join() has closed the door;
        join() then waits for it."""
        with self._in_flight_lock:
            if self._closing:
                return False
            self._working.add(threading.current_thread())
            return True

    def _process(self, transport: Transport, lease: Lease) -> None:
        asking = transport
        if self._permits is not None:
            asking = BatchedPermitTransport(transport, self._permits)
        permits = LeasePermits(asking, lease, self._stop)
        with self._in_flight_lock:
            self._in_flight += 1
        metrics = self._metrics
        counted = metrics.in_flight() if metrics is not None else contextlib.nullcontext()
        try:
            with counted:
                result = self._pipeline.handle(
                    lease.envelope, request_id_hint=lease.request_id, permits=permits
                )
        except Exception:  # noqa: BLE001  # handle() answers everything; this is a last guard
            self._log.exception("request.crashed", request_id=lease.request_id)
            result = Deferred.DROP
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
                self._finished += 1
        if result is Deferred.RELEASE:
            self._release(transport, permits.lease)
        elif isinstance(result, bytes):
            # The permit call renewed the lease: post under its latest expiry.
            if self._poster is not None:
                self._poster.post(permits.lease, result)  # with others finished meanwhile
            else:
                self._complete(transport, permits.lease, result)

    def _complete(self, transport: Transport, lease: Lease, result: bytes) -> None:
        post_one(
            transport,
            lease,
            result,
            journal=self._journal,
            log=self._log,
            stopping=self._stop.is_set,
            late_post=_LATE_POST_SECONDS,
            backoff=Backoff(threading.Event(), base=0.25, cap=5.0),  # finish even while stopping
        )

    def _repost(self, unposted: list[tuple[str, str, bytes]]) -> None:
        """Answers written before a crash but never acknowledged by the relay: post
        them as the permit holder (the relay takes them until another answer is
        stored), so the portal hears what was written rather than in_doubt."""
        transport = self._transport_factory()
        try:
            for request_id, lease_id, result in unposted:
                lease = Lease(lease_id, request_id, b"", time.time() + _REPOST_TRY_SECONDS)
                self._log.info("result.reposted", request_id=request_id)
                self._complete(transport, lease, result)
        finally:
            transport.close()

    def _release(self, transport: Transport, lease: Lease) -> None:
        try:
            transport.release(lease)
            self._log.info("lease.released", request_id=lease.request_id)
        except TransportError as exc:
            self._log.warning("lease.release_failed", request_id=lease.request_id, detail=str(exc))
