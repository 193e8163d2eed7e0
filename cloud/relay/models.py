"""Pydantic bodies of the relay API (they also make the published OpenAPI schema).

Envelopes and results stay opaque: a request envelope is read as raw bytes by the
route (only header.id/tenant/agent_group/exp are looked at), and a result is either
a JSON object or a string holding JSON text. The string form is what our agent
sends, because the relay then hands the portal exactly the bytes the agent signed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cloud.relay import bounds

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
_ID = ID_PATTERN


class _Body(BaseModel):
    """Every body of the relay: numbers must be finite (NaN and 1e999 are refused)."""

    model_config = ConfigDict(allow_inf_nan=False)


def _bounded_public_keys(value: dict[str, Any]) -> dict[str, Any]:
    bounds.check(value, bounds.PUBLIC_KEYS)
    if len(json.dumps(value)) > bounds.PUBLIC_KEYS.max_bytes:
        raise ValueError(f"larger than {bounds.PUBLIC_KEYS.max_bytes} bytes")
    return value


def _bounded_result(value: dict[str, Any] | str) -> dict[str, Any] | str:
    if isinstance(value, str):
        bounds.parse(value, bounds.ENVELOPE)
    else:
        bounds.check(value, bounds.ENVELOPE)
    return value


# What an agent registers and every portal of its tenant reads back.
PublicKeys = Annotated[dict[str, Any], AfterValidator(_bounded_public_keys)]


class ErrorBody(_Body):
    error: str
    message: str = ""


class RoutingHeader(_Body):
    """The plaintext routing fields of a request envelope; everything else is ignored
    (the whole header is wire.messages.RequestHeader, which the relay never parses)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    id: str = Field(pattern=_ID)
    tenant: str = Field(min_length=1, max_length=128)
    agent_group: str = Field(min_length=1, max_length=128)
    exp: float


class RoutingEnvelope(_Body):
    """What the relay reads of a request envelope: its routing header."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    header: RoutingHeader


class Submitted(_Body):
    id: str
    state: str = "queued"


class Pending(_Body):
    state: str


class SubmitBatch(_Body):
    envelopes: list[str] = Field(
        min_length=1, max_length=16, description="request envelopes, each its exact JSON text"
    )


class SubmitOutcome(_Body):
    id: str | None = Field(None, description="set when queued")
    state: str | None = Field(None, description="queued, when queued")
    error: str | None = Field(None, description="the single submit's error code when refused")
    status: int | None = Field(None, description="the single submit's HTTP status when refused")
    message: str = ""


class SubmitOutcomes(_Body):
    outcomes: list[SubmitOutcome] = Field(description="one per envelope, in order")


class ResultsWait(_Body):
    """The requests a portal waits for in one long-poll (POST /v1/requests/results:wait)."""

    ids: list[Annotated[str, Field(pattern=_ID)]] = Field(min_length=1, max_length=100)


class RequestResult(_Body):
    id: str
    state: str = Field(
        description="done | queued | leased | expired | in_doubt | unknown (never submitted, "
        "pruned, or another tenant's)"
    )
    result: str | None = Field(
        None, description="when done: the result envelope, the exact JSON text the agent posted"
    )


class RequestResults(_Body):
    requests: list[RequestResult] = Field(description="one per id asked for, in that order")


class AgentInfo(_Body):
    agent_id: str
    name: str
    public_keys: dict[str, Any]
    online: bool
    last_seen: float | None
    enrolled_at: float


class AgentList(_Body):
    tenant: str
    agent_group: str
    agents: list[AgentInfo]


class PortalKeyBody(_Body):
    kid: str = Field(min_length=1, max_length=128)
    public_key: str = Field(min_length=1, max_length=4096)
    not_before: float | None = None
    not_after: float | None = None


class PortalKeys(_Body):
    keys: list[PortalKeyBody]


class EnrollBody(_Body):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    public_keys: PublicKeys


class PublicKeysBody(_Body):
    public_keys: PublicKeys


class Enrolled(_Body):
    agent_id: str
    tenant: str
    agent_group: str
    portal_keys: list[PortalKeyBody]


class LeaseBody(_Body):
    lease_id: str
    request_id: str
    lease_expires_at: float
    envelope: str = Field(description="the request envelope: its exact JSON text")


class LeaseBatch(_Body):
    leases: list[LeaseBody]


class LeaseRenewed(_Body):
    lease_id: str
    lease_expires_at: float


class PermitAsk(_Body):
    """What the agent is about to write: the user, as a hash of the directory's
    immutable id (the relay never learns the id), and whether the op sets a password."""

    user_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    ordered: bool = Field(True, description="reset/change: newer requests supersede older")
    marker: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="write marker: hash of the server the user was read from and the "
        "entry's change stamp there, read before this call; a redelivery with the "
        "holder's marker takes the permit over",
    )


class PermitAnswer(_Body):
    decision: str = Field(description="granted | in_doubt | superseded | busy | recheck")
    lease_expires_at: float
    lease_seconds: float = Field(description="how long the lease (and the permit) still runs")


class PermitBatchItem(PermitAsk):
    lease_id: str = Field(max_length=128)


class PermitBatch(_Body):
    permits: list[PermitBatchItem] = Field(min_length=1, max_length=16)


class PermitBatchAnswer(_Body):
    lease_id: str
    decision: str | None = Field(None, description="as the single permit call; null on error")
    lease_expires_at: float | None = None
    lease_seconds: float | None = None
    error: str | None = Field(None, description="lease_lost (the single call's 409), or null")


class PermitBatchAnswers(_Body):
    answers: list[PermitBatchAnswer] = Field(description="one per permit asked, in order")


class ResultPost(_Body):
    """One result as an agent posts it (the signed result inside is
    wire.messages.ResultBody, opaque here)."""

    lease_id: str = Field(max_length=128)
    request_id: str = Field(pattern=_ID)
    result: Annotated[dict[str, Any] | str, AfterValidator(_bounded_result)] = Field(
        description="the signed result: a JSON object, or a string holding its JSON text"
    )


class ResultBatch(_Body):
    results: list[ResultPost] = Field(min_length=1, max_length=32)


class ResultOutcome(_Body):
    request_id: str
    outcome: str = Field(description="stored | lease_lost | malformed_result | too_large")


class ResultOutcomes(_Body):
    outcomes: list[ResultOutcome]


class Ok(_Body):
    ok: bool = True


class ServerTime(_Body):
    server_time: float


class TenantCreate(_Body):
    tenant: str = Field(pattern=_ID)


class TenantCreated(_Body):
    tenant: str
    api_token: str


class EnrollmentCodeCreate(_Body):
    tenant: str
    agent_group: str = Field(min_length=1, max_length=128)
    ttl: float = Field(3600.0, gt=0, le=30 * 86400)


class EnrollmentCodeCreated(_Body):
    code: str
    tenant: str
    agent_group: str
    expires_at: float


class PortalKeyCreate(PortalKeyBody):
    tenant: str


class AgentHealth(_Body):
    """One agent as an operator sees it (`writeback-relay agent list`, GET /v1/admin/agents)."""

    agent_id: str
    name: str
    agent_group: str
    enrolled_at: float
    online: bool = Field(description="seen (lease poll or heartbeat) within presence_timeout")
    last_seen: float | None
    version: str | None = Field(description="from the last verified heartbeat")
    last_heartbeat: float | None = Field(description="sent_at of the last verified heartbeat")
    directories: dict[str, Any] = Field(
        default_factory=dict, description="directory name -> reachable, as the agent reported"
    )
    in_flight: int | None = None


class AgentHealthList(_Body):
    tenant: str
    agents: list[AgentHealth]
