"""Write permits: the agent's fence before it writes (the rules: cloud/relay/store.py;
the operator's view: docs/operations.md, "High availability").

The pipeline asks a `PermitGate` for a permit for (tenant, user key) right before the
directory write; `LeasePermits` is the gate for one lease, over the agent's transport.
It waits out BUSY (another request for the same user holds an open permit) with a
short backoff, retries a relay that does not answer (asking again under the same
lease gets the same grant, so a lost answer costs nothing), and gives the lease back
when the wait runs too long or the agent is stopping, so the request is redelivered
rather than held by a waiting worker.
"""

from __future__ import annotations

import hashlib
import threading
import time
from enum import Enum
from typing import Protocol

from agent.transports.base import (
    Lease,
    LeaseLost,
    Permit,
    Transport,
    TransportError,
    TransportUnavailable,
)
from wire.permits import PermitDecision

# How long a worker waits for another write to the same user before giving the
# lease back (the request goes back to the queue, oldest first).
BUSY_WAIT = 5.0


def user_key(tenant: str, immutable_id: str) -> str:
    """What the relay knows of a user: a hash of the directory's immutable id
    (objectGUID on AD, entryUUID on OpenLDAP), so the relay never holds the id itself.
    `alice`, `alice@corp` and `CORP\\alice` resolve to one entry, so to one key."""
    material = f"writeback-user-key/v1\n{tenant}\n{immutable_id.strip().lower()}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def write_marker(key: str, server: str, change_stamp: str) -> str | None:
    """What the relay keeps with a permit so that a redelivery can prove the holder
    never wrote: a hash of the server the user was read from and the entry's change
    stamp there (AD uSNChanged, OpenLDAP entryCSN), read BEFORE the permit was asked.
    The holder writes only to that server and only while its permit runs; so when the
    next agent, after the holder's lease ended, reads the same stamp on the same
    server, nothing was written to the entry, and it may write. None when the
    directory gave no stamp: a redelivery is then answered in_doubt."""
    if not server or not change_stamp:
        return None
    material = f"writeback-write-marker/v1\n{key}\n{server}\n{change_stamp}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class GiveBack(Exception):
    """No permit in time (another write to this user is still open, the relay is
    unreachable, or the agent is stopping): write nothing and give the lease back."""


class PermitGate(Protocol):
    """The relay's write permit for the request in hand."""

    @property
    def lease_id(self) -> str:
        """The lease a granted permit belongs to (the journal keeps it for a re-post)."""
        ...

    def ask(
        self, key: str, *, ordered: bool, deadline: float, marker: str | None = None
    ) -> Permit:
        """GRANTED, RECHECK, IN_DOUBT or SUPERSEDED (BUSY is waited out). RECHECK
        reserves the permit: read the user again, then ask again. Raises LeaseLost
        (another agent may hold the request now) or GiveBack."""
        ...


class Deferred(Enum):
    """No result to post for this lease."""

    DROP = "drop"  # another worker has it, or the lease is lost: do nothing
    RELEASE = "release"  # give the lease back now: it will be redelivered


class LeasePermits:
    """`PermitGate` for one lease held by this agent."""

    @property
    def lease_id(self) -> str:
        return self.lease.lease_id

    def __init__(
        self,
        transport: Transport,
        lease: Lease,
        stop: threading.Event,
        *,
        busy_wait: float = BUSY_WAIT,
        sleep: float = 0.05,
    ) -> None:
        self._transport = transport
        self.lease = lease
        self._stop = stop
        self._busy_wait = busy_wait
        self._sleep = sleep

    def ask(
        self, key: str, *, ordered: bool, deadline: float, marker: str | None = None
    ) -> Permit:
        give_up_busy = min(deadline, time.time() + self._busy_wait)
        delay = self._sleep
        while True:
            try:
                permit = self._transport.permit(self.lease, key, ordered=ordered, marker=marker)
            except LeaseLost:
                raise
            except TransportUnavailable as exc:
                if time.time() + delay >= deadline:
                    raise GiveBack(f"no answer from the relay: {exc}") from exc
            except TransportError as exc:
                raise GiveBack(f"the relay refused the permit call: {exc}") from exc
            else:
                self.lease = permit.lease
                if permit.decision is not PermitDecision.BUSY:
                    return permit
                if self._stop.is_set() or time.time() + delay >= give_up_busy:
                    raise GiveBack("another write to this user is still open")
            self._stop.wait(delay)
            delay = min(delay * 2, 1.0)
