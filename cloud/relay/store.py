"""The relay's storage seam: four small ABCs by role, one implementation per database.

    TenantStore   tenants (API token hashes) and their portal keys
    AgentStore    enrollment codes, agents, presence
    QueueStore    requests, leases, write permits and results
    OpsStore      single-use signed calls (nonces), agent status, /readyz, /metrics
    RelayStore    all four plus close(): what the app is given

`store_sqlite.SQLiteStore` is the embedded default; a PostgreSQL store (for several
relay replicas) implements the same ABCs and must pass the same contract tests
(`tests/unit/relay/test_store_contract.py`). A back end that misses a method fails
when it is constructed (TypeError), not on the first request that needs it
(APScheduler 3.x `BaseJobStore` style). The rules every implementation keeps:

- Every method is one transaction. `lease` is atomic: two agents (on any replica)
  never hold the same request at the same time. SQLite gets that from a
  compare-and-set UPDATE; PostgreSQL from `SELECT ... FOR UPDATE SKIP LOCKED`.
  `permit` is atomic per user: two permits for one user key are never open at once
  (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: lock the user's rows or an advisory lock
  on hash(tenant, user_key)).
- Time is passed in (`now`, unix seconds) rather than read inside, so the contract
  tests can drive expiry without sleeping and all replicas agree on one clock
  source per call.
- Secrets (tenant API tokens, enrollment codes) are stored as SHA-256 hashes only;
  callers hash them (`auth.hash_secret`). User keys arrive hashed by the agent.
- Envelopes and results are opaque bytes: the store never parses them.

The write permit is what keeps a result honest across agents. Every request gets a
submit sequence number from the store when it is queued (`add_request`): one counter
in one database (all replicas share it), so "newer" means "accepted later by the
relay" and never depends on a clock. Why not the signed `iat`: it has one-second
granularity (two resets in one second would be ordered by a tie-breaker such as the
random id, so the older password would win half the time), and portal instances'
clocks may differ by the allowed skew (a portal 3 s ahead would make its older
request "newer" than one submitted after it by another instance). The sequence is
not signed; a relay could reorder, but it can only choose which of the user's own
requests wins, and every answer stays true to that order (the loser says superseded).
Before it writes, the agent holding the lease asks
`permit(lease, user_key, marker=...)`; the answer is one of `PermitDecision`
(GRANTED, IN_DOUBT, SUPERSEDED, BUSY, RECHECK). The rules are in one place,
wire/permits.py `plan_permit`, shared by both stores and the agent's in-memory
transport; a store reads the request's permit under its lock, answers three
questions about the user's other requests (a newer ordered one permitted? another
permit open? another permit that may have written since this lease began?) and
records what the plan says. The write marker (agent/permits.py `write_marker`) is a
hash of the server the agent read the user from and the entry's change stamp there;
a redelivery whose marker equals the holder's, asked after the holder's time ran
out, proves the holder never wrote and takes the permit over. RECHECK reserves the
permit (exclusive, not a licence to write) when another write to the user may have
landed after this lease began, i.e. possibly after the agent's read: the agent reads
again and confirms with a fresh marker, so the marker the relay keeps is always true.

A permit is open from its grant until its holder's result is stored, or, once the
holder's lease is lost, until its outcome is recorded as in doubt: a redelivery was
answered IN_DOUBT, or another agent posted a result for it, or the request expired
(the portal then sees `RequestState.IN_DOUBT`). Even then it stays open until the
holder's lease would have run out (`permit_until`), so a holder that is still
writing (its agent removed, its leases put back in the queue) never overlaps a
newer write.

Exception tree::

    StoreError
     +-- DuplicateError      (tenant, request id, or portal key id already exists)
     +-- NotFoundError       (tenant or agent does not exist)
     +-- LeaseLost           (the lease is not held by this agent any more)
     +-- EnrollmentError     (code unknown, used, or expired; `.reason` says which)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wire.permits import PermitDecision


class StoreError(Exception):
    """Base class of everything a store raises on purpose."""


class DuplicateError(StoreError):
    """The row exists already (request id seen before, tenant or key id taken)."""


class NotFoundError(StoreError):
    """The tenant or agent named does not exist."""


class LeaseLost(StoreError):
    """The lease is gone: released, completed, or timed out and taken by another agent."""


class EnrollmentError(StoreError):
    """An enrollment code that cannot be redeemed; `reason` is a stable error code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid_enrollment_code" | "enrollment_code_used" | "..._expired"

    @classmethod
    def check(cls, row: Sequence[Any] | None, now: float) -> tuple[str, str]:
        """The (tenant, agent_group) of an enrollment code row (tenant, agent_group,
        expires_at, used_at) that may be redeemed at `now`; else raises why not."""
        if row is None:
            raise cls("invalid_enrollment_code")
        tenant, group, expires_at, used_at = row
        if used_at is not None:
            raise cls("enrollment_code_used")
        if expires_at <= now:
            raise cls("enrollment_code_expired")
        return str(tenant), str(group)


class RequestState(StrEnum):
    """What the portal sees while it waits for a result."""

    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    EXPIRED = "expired"  # expired before any write was permitted: certainly not written
    # Expired after a write was permitted whose agent never answered: it may or may
    # not have been applied (no signed result exists; the relay says so itself).
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True)
class Permit:
    decision: PermitDecision
    lease_expires_at: float  # the lease, renewed by every permit call
    taken_over: bool = False  # granted to a redelivery: the holder provably never wrote


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    tenant: str
    agent_group: str
    name: str
    public_keys: dict[str, Any]  # as the agent registered them; opaque except sign_key
    sign_key: str  # base64url raw Ed25519 public key, used to verify relay auth
    enrolled_at: float
    last_seen: float | None
    removed: bool


@dataclass(frozen=True)
class PortalKey:
    kid: str
    public_key: str
    not_before: float | None
    not_after: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "public_key": self.public_key,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }


@dataclass(frozen=True)
class LeaseGrant:
    lease_id: str
    request_id: str
    tenant: str
    envelope: bytes
    expires_at: float


@dataclass(frozen=True)
class RequestStatus:
    state: RequestState
    result: bytes | None = None


class TenantStore(ABC):
    """Tenants and their portal keys."""

    @abstractmethod
    def add_tenant(self, tenant: str, token_hash: str, now: float) -> None:
        """Raises DuplicateError if the tenant exists."""

    @abstractmethod
    def tenant_for_token(self, token_hash: str) -> str | None:
        """The tenant whose API token hashes to this, or None."""

    @abstractmethod
    def add_portal_key(self, tenant: str, key: PortalKey, now: float) -> None:
        """Adds a key, or sets the window of the same key added before (rotation
        retires the old key by giving it a not_after). Raises NotFoundError (no such
        tenant) or DuplicateError (the kid is taken by a different key)."""

    @abstractmethod
    def portal_keys(self, tenant: str, now: float) -> list[PortalKey]:
        """Keys not yet past not_after, including future ones (so agents can pin ahead)."""


class AgentStore(ABC):
    """Enrollment codes, enrolled agents and their presence."""

    @abstractmethod
    def add_enrollment_code(
        self, code_hash: str, tenant: str, agent_group: str, expires_at: float, now: float
    ) -> None:
        """Raises NotFoundError when the tenant does not exist."""

    @abstractmethod
    def enroll(
        self,
        code_hash: str,
        agent_id: str,
        name: str,
        public_keys: dict[str, Any],
        sign_key: str,
        *,
        now: float,
    ) -> AgentRecord:
        """Burn the code and create the agent in one transaction. Raises
        EnrollmentError (unknown, used or expired code)."""

    @abstractmethod
    def get_agent(self, agent_id: str) -> AgentRecord | None:
        """The agent, removed or not; None when never enrolled."""

    @abstractmethod
    def update_public_keys(self, agent_id: str, public_keys: dict[str, Any]) -> None:
        """Replace an enrolled agent's public record (encryption key rotation)."""

    @abstractmethod
    def list_agents(self, tenant: str, agent_group: str) -> list[AgentRecord]:
        """Enrolled, non-removed agents of the group, oldest first."""

    @abstractmethod
    def remove_agent(self, agent_id: str, now: float) -> None:
        """Raises NotFoundError; a removed agent can no longer authenticate. Its
        leases go back to the queue at once; a permit one of them holds stays open
        until that lease would have run out (the agent may still be writing), and a
        redelivery of such a request is answered IN_DOUBT by `permit`."""

    @abstractmethod
    def touch_agent(self, agent_id: str, now: float, status: bytes | None = None) -> None:
        """Record presence (and the last heartbeat payload when given)."""

    @abstractmethod
    def any_agent_online(self, tenant: str, agent_group: str, since: float) -> bool:
        """Whether a non-removed agent of the group was seen at or after `since`."""


class QueueStore(ABC):
    """Requests, leases, write permits and results."""

    @abstractmethod
    def add_request(
        self,
        tenant: str,
        request_id: str,
        agent_group: str,
        exp: float,
        envelope: bytes,
        *,
        now: float,
    ) -> None:
        """Queue a request and give it the next submit sequence number (what "newer"
        means for permits). Raises DuplicateError when (tenant, request_id) was seen."""

    @abstractmethod
    def lease(
        self,
        tenant: str,
        agent_group: str,
        agent_id: str,
        lease_id: str,
        *,
        now: float,
        lease_timeout: float,
    ) -> LeaseGrant | None:
        """Atomically take the oldest leasable request: queued (or its lease timed
        out), not expired (exp > now). None when there is none."""

    @abstractmethod
    def renew(self, lease_id: str, agent_id: str, now: float, lease_timeout: float) -> float:
        """New expiry of a lease this agent still holds. Raises LeaseLost."""

    @abstractmethod
    def permit(
        self,
        lease_id: str,
        agent_id: str,
        user_key: str,
        *,
        ordered: bool,
        now: float,
        lease_timeout: float,
        marker: str | None = None,
        late_answer_grace: float = 0.0,
    ) -> Permit:
        """May the holder of this lease write to the user `user_key` now? (See the
        module docstring for the decisions; `marker` is the write marker.) `ordered`
        is True for ops that set a password (reset, change): only those supersede and
        are superseded; every permit excludes every other open permit for the user.
        Renews the lease. Raises LeaseLost when this agent does not hold the lease (or the request
        has a result already)."""

    @abstractmethod
    def release(self, lease_id: str, agent_id: str) -> str:
        """Put the request back in the queue at once; returns its request id.
        Raises LeaseLost."""

    @abstractmethod
    def complete(
        self, lease_id: str, request_id: str, agent_id: str, result: bytes, now: float
    ) -> bool:
        """Store the result and close the request's permit. Accepted from the lease
        holder, and from the holder of the request's permit even after its lease was
        lost (the first writer's answer is the truth) as long as no result is stored.
        True if stored now, False if this agent had already completed the same
        request (idempotent re-post). Raises LeaseLost otherwise."""

    @abstractmethod
    def request_status(self, tenant: str, request_id: str, now: float) -> RequestStatus | None:
        """None when unknown to this tenant."""

    def request_statuses(
        self, tenant: str, request_ids: Sequence[str], now: float
    ) -> list[RequestStatus | None]:
        """`request_status` of each id, in order (a store may read them in one query)."""
        return [self.request_status(tenant, request_id, now) for request_id in request_ids]

    @abstractmethod
    def request_tenant_group(self, lease_id: str) -> tuple[str, str, str] | None:
        """(tenant, agent_group, request_id) of a lease, for wake-ups and logs."""

    @abstractmethod
    def prune(self, now: float, keep_for: float) -> int:
        """Delete requests expired or answered more than `keep_for` seconds ago and
        stale enrollment codes. Returns the number of requests deleted. A request
        whose permit is still open is kept."""



# --- relay operations: replay protection, agent status, /readyz, /metrics ---------------


@dataclass(frozen=True)
class AgentStatus:
    """An agent as operators see it: presence plus its last verified heartbeat."""

    agent_id: str
    tenant: str
    agent_group: str
    name: str
    enrolled_at: float
    last_seen: float | None
    heartbeat: bytes | None  # canonical JSON of the last verified HeartbeatBody

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> AgentStatus:
        """From (agent_id, tenant, agent_group, name, enrolled_at, last_seen, status)."""
        return cls(
            str(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]),
            None if row[5] is None else float(row[5]),
            None if row[6] is None else str(row[6]).encode("utf-8"),
        )


class OpsStore(ABC):
    """Relay operations: single-use signed calls, agent status, /readyz, /metrics."""

    @abstractmethod
    def use_nonce(self, agent_id: str, nonce: str, ts: float) -> bool:
        """Record that a signed call with this nonce was accepted. False when the same
        (agent, nonce) was recorded before: a replay. Atomic across relay processes."""

    @abstractmethod
    def prune_nonces(self, before: float) -> int:
        """Forget nonces of calls signed before `before` (the clock window refuses
        those anyway). Returns how many were deleted."""

    @abstractmethod
    def agent_statuses(self, tenant: str, agent_group: str | None = None) -> list[AgentStatus]:
        """Non-removed agents of the tenant (one group, or all), oldest first."""

    @abstractmethod
    def ping(self) -> None:
        """A round trip to the database that needs its write lock (a relay that cannot
        write cannot serve); raises when it cannot answer."""

    @abstractmethod
    def request_counts(self, now: float) -> dict[str, int]:
        """Requests in the store by RequestState value (queued, leased, done, expired)."""

    @abstractmethod
    def online_counts(self, since: float) -> list[tuple[str, str, int]]:
        """(tenant, agent_group, agents seen since `since`) for every group with agents."""


class RelayStore(TenantStore, AgentStore, QueueStore, OpsStore):
    """Everything the relay app needs from its database."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
