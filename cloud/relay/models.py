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


class AgentHealth(BaseModel):
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


class AgentHealthList(BaseModel):
    tenant: str
    agents: list[AgentHealth]
