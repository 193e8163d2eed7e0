"""The seam between the agent and its queue, kept as small as httpx's BaseTransport.

The agent's loop only ever does: lease a request (long-poll), ask for a write permit
before it writes (which also renews the lease), then complete it with a result (or
release it on shutdown), plus heartbeats and portal-key refreshes. Envelopes and
results are opaque bytes here; the protocol layer (wire) parses and verifies them.

Implementations: `relay.RelayTransport` (HTTPS long-poll to the relay) and
`memory.MemoryTransport` (in-process, for tests).

Exception tree (what the caller should do)::

    TransportError                 anything else: a bug or a refused call; log, back off
     +-- TransportUnavailable      network fault, timeout, 5xx, 429: retry with backoff
     +-- LeaseLost                 409: the lease is gone (another agent has the request);
     |                             drop the work, never post its result elsewhere
     +-- AuthenticationFailed      401/403: the relay does not accept this agent (removed,
     |                             wrong key, clock skew); needs an operator, not a retry loop
     +-- EnrollmentFailed          the enrollment code was refused (unknown, used, expired)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wire.permits import PermitDecision

# Per-result outcomes of `Transport.complete_many`; any other value is the relay's
# error code for a result it refused (e.g. "too_large", "malformed_result").
RESULT_STORED = "stored"  # taken (or the same agent's identical re-post)
RESULT_LEASE_LOST = "lease_lost"  # another answer is stored: never post this one again


@dataclass(frozen=True)
class Lease:
    """A request this agent holds until `expires_at` (unix seconds) unless renewed."""

    lease_id: str
    request_id: str
    envelope: bytes
    expires_at: float

    def __repr__(self) -> str:
        # The envelope is sealed, but logs have no use for its bytes.
        return (
            f"Lease(lease_id={self.lease_id!r}, request_id={self.request_id!r}, "
            f"envelope=<{len(self.envelope)} bytes>, expires_at={self.expires_at})"
        )


@dataclass(frozen=True)
class Permit:
    decision: PermitDecision
    lease: Lease  # with the renewed expiry
    valid_for: float  # seconds the lease (and so the permit) still runs, by the relay's clock


class TransportError(Exception):
    """Base class. `code` is the relay's stable error code when there is one."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class TransportUnavailable(TransportError):
    """The queue cannot be reached right now; retry with backoff."""


class LeaseLost(TransportError):
    """The lease is no longer ours (timed out and taken, released, or completed)."""


class AuthenticationFailed(TransportError):
    """The relay refused this agent's credentials; retrying will not help."""


class EnrollmentFailed(TransportError):
    """The enrollment code was refused; `code` says why."""


class Transport(Protocol):
    def lease(self, wait: float) -> Lease | None:
        """Wait up to `wait` seconds for a request; None if none came. Also counts as
        presence, so the relay routes requests to this agent's group."""
        ...

    def renew(self, lease: Lease) -> Lease:
        """Extend the lease; the returned Lease carries the new expiry."""
        ...

    def permit(
        self, lease: Lease, user_key: str, *, ordered: bool, marker: str | None = None
    ) -> Permit:
        """Ask to write to the user `user_key` (a hash of the directory's immutable
        id); renews the lease whatever the answer. Asking again under the same lease
        after a lost answer gets the same grant. `marker` (agent/permits.py
        `write_marker`) lets a redelivery prove the first holder never wrote.
        Raises LeaseLost."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the request back unprocessed (graceful shutdown)."""
        ...

    def complete(self, lease: Lease, result: bytes) -> None:
        """Post the signed result. Idempotent for the same agent and request."""
        ...

    def complete_many(self, results: Sequence[tuple[Lease, bytes]]) -> list[str]:
        """Post several results in one call; one outcome per result, in order
        (RESULT_STORED, RESULT_LEASE_LOST or the relay's refusal code). Raises for
        the call as a whole (TransportUnavailable: nothing is known to be stored)."""
        ...

    def heartbeat(self, payload: bytes) -> None:
        """Report liveness (payload: a small JSON object, e.g. version and health)."""
        ...

    def portal_keys(self) -> list[dict[str, Any]]:
        """The tenant's current portal keys: [{kid, public_key, not_before, not_after}]."""
        ...

    def close(self) -> None: ...
