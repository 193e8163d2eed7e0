"""The relay's storage seam: one small Protocol, one implementation per database.

`store_sqlite.SQLiteStore` is the embedded default; a PostgreSQL store (for several
relay replicas) implements the same Protocol and must pass the same contract tests
(`tests/unit/relay/test_store_contract.py`). The rules every implementation keeps:

- Every method is one transaction. `lease` is atomic: two agents (on any replica)
  never hold the same request at the same time. SQLite gets that from a
  compare-and-set UPDATE; PostgreSQL from `SELECT ... FOR UPDATE SKIP LOCKED`.
- Time is passed in (`now`, unix seconds) rather than read inside, so the contract
  tests can drive expiry without sleeping and all replicas agree on one clock
  source per call.
- Secrets (tenant API tokens, enrollment codes) are stored as SHA-256 hashes only;
  callers hash them (`auth.hash_secret`).
- Envelopes and results are opaque bytes: the store never parses them.

Exception tree::

    StoreError
     +-- DuplicateError      (tenant, request id, or portal key id already exists)
     +-- NotFoundError       (tenant or agent does not exist)
     +-- LeaseConflict       (the lease is not held by this agent any more)
     +-- EnrollmentError     (code unknown, used, or expired; `.reason` says which)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class StoreError(Exception):
    """Base class of everything a store raises on purpose."""


class DuplicateError(StoreError):
    """The row exists already (request id seen before, tenant or key id taken)."""


class NotFoundError(StoreError):
    """The tenant or agent named does not exist."""


class LeaseConflict(StoreError):
    """The lease is gone: released, completed, or timed out and taken by another agent."""


class EnrollmentError(StoreError):
    """An enrollment code that cannot be redeemed; `reason` is a stable error code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "invalid_enrollment_code" | "enrollment_code_used" | "..._expired"


class RequestState(StrEnum):
    """What the portal sees while it waits for a result."""

    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Agent:
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


class RelayStore(Protocol):
    """Persistence for tenants, agents, enrollment codes, portal keys and the queue."""

    # --- tenants and portal keys -------------------------------------------------
    def add_tenant(self, tenant: str, token_hash: str, now: float) -> None:
        """Raises DuplicateError if the tenant exists."""
        ...

    def tenant_for_token(self, token_hash: str) -> str | None: ...

    def add_portal_key(self, tenant: str, key: PortalKey, now: float) -> None:
        """Adds a key, or sets the window of the same key added before (rotation
        retires the old key by giving it a not_after). Raises NotFoundError (no such
        tenant) or DuplicateError (the kid is taken by a different key)."""
        ...

    def portal_keys(self, tenant: str, now: float) -> list[PortalKey]:
        """Keys not yet past not_after, including future ones (so agents can pin ahead)."""
        ...

    # --- enrollment and agents ---------------------------------------------------
    def add_enrollment_code(
        self, code_hash: str, tenant: str, agent_group: str, expires_at: float, now: float
    ) -> None: ...

    def enroll(
        self,
        code_hash: str,
        agent_id: str,
        name: str,
        public_keys: dict[str, Any],
        sign_key: str,
        *,
        now: float,
    ) -> Agent:
        """Burn the code and create the agent in one transaction (EnrollmentError if not)."""
        ...

    def get_agent(self, agent_id: str) -> Agent | None: ...

    def update_public_keys(self, agent_id: str, public_keys: dict[str, Any]) -> None:
        """Replace an enrolled agent's public record (encryption key rotation)."""
        ...

    def list_agents(self, tenant: str, agent_group: str) -> list[Agent]:
        """Enrolled, non-removed agents of the group, oldest first."""
        ...

    def remove_agent(self, agent_id: str, now: float) -> None:
        """Raises NotFoundError; a removed agent can no longer authenticate."""
        ...

    def touch_agent(self, agent_id: str, now: float, status: bytes | None = None) -> None:
        """Record presence (and the last heartbeat payload when given)."""
        ...

    def any_agent_online(self, tenant: str, agent_group: str, since: float) -> bool: ...

    # --- the queue -----------------------------------------------------------------
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
        """Queue a request. Raises DuplicateError when (tenant, request_id) was seen."""
        ...

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
        ...

    def renew(self, lease_id: str, agent_id: str, now: float, lease_timeout: float) -> float:
        """New expiry of a lease this agent still holds; LeaseConflict otherwise."""
        ...

    def release(self, lease_id: str, agent_id: str) -> str:
        """Put the request back in the queue at once; returns its request id."""
        ...

    def complete(
        self, lease_id: str, request_id: str, agent_id: str, result: bytes, now: float
    ) -> bool:
        """Store the result. True if stored now, False if this agent had already
        completed the same request (idempotent re-post); LeaseConflict otherwise."""
        ...

    def request_status(self, tenant: str, request_id: str, now: float) -> RequestStatus | None:
        """None when unknown to this tenant."""
        ...

    def request_tenant_group(self, lease_id: str) -> tuple[str, str, str] | None:
        """(tenant, agent_group, request_id) of a lease, for wake-ups and logs."""
        ...

    def prune(self, now: float, keep_for: float) -> int:
        """Delete requests expired or answered more than `keep_for` seconds ago and
        stale enrollment codes. Returns the number of requests deleted."""
        ...

    def close(self) -> None: ...


# --- relay operations (added for replay protection, agent status, /readyz, /metrics) ----
# A separate block so it merges cleanly with the store split by role: these methods are
# the "operations" role (cloud/relay/ops*, routes_ops.py, the admin agent listing).


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


class OpsStore(Protocol):
    def use_nonce(self, agent_id: str, nonce: str, ts: float) -> bool:
        """Record that a signed call with this nonce was accepted. False when the same
        (agent, nonce) was recorded before: a replay. Atomic across relay processes."""
        ...

    def prune_nonces(self, before: float) -> int:
        """Forget nonces of calls signed before `before` (the clock window refuses
        those anyway). Returns how many were deleted."""
        ...

    def agent_statuses(self, tenant: str, agent_group: str | None = None) -> list[AgentStatus]:
        """Non-removed agents of the tenant (one group, or all), oldest first."""
        ...

    def ping(self) -> None:
        """A round trip to the database that needs its write lock (a relay that cannot
        write cannot serve); raises when it cannot answer."""
        ...

    def request_counts(self, now: float) -> dict[str, int]:
        """Requests in the store by RequestState value (queued, leased, done, expired)."""
        ...

    def online_counts(self, since: float) -> list[tuple[str, str, int]]:
        """(tenant, agent_group, agents seen since `since`) for every group with agents."""
        ...
