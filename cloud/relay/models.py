"""Pydantic bodies of the relay API (they also make the published OpenAPI schema).

Envelopes and results stay opaque: a request envelope is read as raw bytes by the
route (only header.id/tenant/agent_group/exp are looked at), and a result is either
a JSON object or a string holding JSON text. The string form is what our agent
sends, because the relay then hands the portal exactly the bytes the agent signed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


class ErrorBody(BaseModel):
    error: str
    message: str = ""


class RequestHeader(BaseModel):
    """The plaintext routing fields of a request envelope; everything else is ignored."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(pattern=_ID)
    tenant: str = Field(min_length=1, max_length=128)
    agent_group: str = Field(min_length=1, max_length=128)
    exp: float


class RequestEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")
    header: RequestHeader


class Submitted(BaseModel):
    id: str
    state: str = "queued"


class Pending(BaseModel):
    state: str


class AgentInfo(BaseModel):
    agent_id: str
    name: str
    public_keys: dict[str, Any]
    online: bool
    last_seen: float | None
    enrolled_at: float


class AgentList(BaseModel):
    tenant: str
    agent_group: str
    agents: list[AgentInfo]


class PortalKeyBody(BaseModel):
    kid: str = Field(min_length=1, max_length=128)
    public_key: str = Field(min_length=1, max_length=4096)
    not_before: float | None = None
    not_after: float | None = None


class PortalKeys(BaseModel):
    keys: list[PortalKeyBody]


class EnrollBody(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    public_keys: dict[str, Any]


class PublicKeysBody(BaseModel):
    public_keys: dict[str, Any]


class Enrolled(BaseModel):
    agent_id: str
    tenant: str
    agent_group: str
    portal_keys: list[PortalKeyBody]


class LeaseBody(BaseModel):
    lease_id: str
    request_id: str
    lease_expires_at: float
    envelope: str = Field(description="the request envelope: its exact JSON text")


class LeaseRenewed(BaseModel):
    lease_id: str
    lease_expires_at: float


class PermitAsk(BaseModel):
    """What the agent is about to write: the user, as a hash of the directory's
    immutable id (the relay never learns the id), and whether the op sets a password."""

    user_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    ordered: bool = Field(True, description="reset/change: newer requests supersede older")


class PermitAnswer(BaseModel):
    decision: str = Field(description="granted | in_doubt | superseded | busy")
    lease_expires_at: float
    lease_seconds: float = Field(description="how long the lease (and the permit) still runs")


class ResultBody(BaseModel):
    lease_id: str = Field(max_length=128)
    request_id: str = Field(pattern=_ID)
    result: dict[str, Any] | str = Field(
        description="the signed result: a JSON object, or a string holding its JSON text"
    )


class Ok(BaseModel):
    ok: bool = True


class ServerTime(BaseModel):
    server_time: float


class TenantCreate(BaseModel):
    tenant: str = Field(pattern=_ID)


class TenantCreated(BaseModel):
    tenant: str
    api_token: str


class EnrollmentCodeCreate(BaseModel):
    tenant: str
    agent_group: str = Field(min_length=1, max_length=128)
    ttl: float = Field(3600.0, gt=0, le=30 * 86400)


class EnrollmentCodeCreated(BaseModel):
    code: str
    tenant: str
    agent_group: str
    expires_at: float


class PortalKeyCreate(PortalKeyBody):
    tenant: str
