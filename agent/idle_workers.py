"""Batch leasing's count of idle workers: the dispatcher takes tickets for the
workers it leases for, a worker gives its ticket back when its request is done.

Why the linger: with one lease call per freed worker, a busy agent makes about one
lease call per request. While other workers are still busy, requests keep coming
for them anyway, so the dispatcher waits a few milliseconds for more of them to
finish and leases for all of them in one call. A worker idle while nobody else is
busy is leased for at once: a lone request never waits (agent/poster.py lingers
the same way for results).

Why a lone request holds the next lease call back until its directory write: with
one request in hand, the dispatcher's next long-poll (signing it here, the relay
checking it, the relay's reply) used to go out after the linger, in the middle of
that request's own way to its write: the envelope's checks, the lookup, the write
permit from the relay. On two cores the long-poll's work then competes with the
request's, on the agent's one interpreter lock and in the relay's one event loop.
Once the request waits on its directory write (tens of milliseconds on an AD DC)
nothing of it needs the CPU, so the long-poll goes out then; a lone request that
never writes (an answer from the journal, not managed, a preflight) gives its
ticket back soon, and a stuck one at most after `lone_wait`. A request that arrives
meanwhile waits in the relay's queue until the long-poll is there.
"""

from __future__ import annotations

import threading
import time

# How long the dispatcher waits for more workers to finish while others are busy.
LEASE_LINGER = 0.005
# The longest the next lease call waits for a lone request to reach its write.
LONE_WAIT = 0.25


class IdleWorkers:
    def __init__(
        self, workers: int, *, linger: float = LEASE_LINGER, lone_wait: float = LONE_WAIT
    ) -> None:
        self._workers = workers
        self._linger = linger
        self._lone_wait = lone_wait
        self._cond = threading.Condition(threading.Lock())  # the dispatcher waits on it
        self._free = workers
        self._writing = 0  # busy workers whose request's directory write has started

    def take(self, most: int, timeout: float) -> int:
        """Tickets for up to `most` idle workers (0 when none became idle within
        `timeout`): all idle now, plus those that finish within the linger while
        others are still busy; with one request in hand, wait instead until it is
        at its directory write or done (at most `lone_wait`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._free > 0, timeout):
                return 0
            tickets = self._grab(most)
            lone = self._workers - self._free - tickets == 1  # one request in hand
            until = time.monotonic() + (self._lone_wait if lone else self._linger)
            while tickets < min(most, self._workers):  # someone is still busy
                if lone and self._writing:
                    break
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                tickets += self._grab(most - tickets)
            return tickets

    def _grab(self, most: int) -> int:
        n = min(most, self._free)
        self._free -= n
        return n

    def writing(self) -> None:
        """A busy worker's request has started its directory write."""
        with self._cond:
            self._writing += 1
            self._cond.notify()

    def give(self, n: int = 1, *, wrote: bool = False) -> None:
        """`n` workers are idle again (or tickets taken were not used); `wrote`: the
        worker had said `writing` for the request it is done with."""
        if n <= 0:
            return
        with self._cond:
            self._free += n
            if wrote:
                self._writing -= 1
            self._cond.notify()


class InHand:
    """One worker's request from its lease to its answer, as the dispatcher counts it:
    `writing` once its directory write starts (again is a no-op), `done` at the end."""

    def __init__(self, idle: IdleWorkers) -> None:
        self._idle = idle
        self._wrote = False

    def writing(self) -> None:
        if not self._wrote:
            self._wrote = True
            self._idle.writing()

    def done(self) -> None:
        self._idle.give(wrote=self._wrote)
