"""Admin API (Authorization: Bearer <admin token from --admin-token-file>).

The same operations as the CLI's admin subcommands, for deployments where the
operator cannot reach the database file (containers, PostgreSQL), and for tests.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Query

from cloud.relay import admin as ops
from cloud.relay.deps import Admin, Ctx
from cloud.relay.errors import ERROR_RESPONSES
from cloud.relay.models import (
    AgentHealthList,
    EnrollmentCodeCreate,
    EnrollmentCodeCreated,
    Ok,
    PortalKeyCreate,
    TenantCreate,
    TenantCreated,
)
from cloud.relay.ops import agent_health
from cloud.relay.store import PortalKey

log = structlog.get_logger("writeback.relay")
router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Admin], responses=ERROR_RESPONSES
)


@router.post("/tenants", status_code=201, response_model=TenantCreated)
async def create_tenant(body: TenantCreate, ctx: Ctx) -> TenantCreated:
    """Returns the tenant's portal API token; it is shown only this once."""
    token = await ctx.run(ops.create_tenant, ctx.store, body.tenant, ctx.clock())
    log.info("tenant.created", tenant=body.tenant)
    return TenantCreated(tenant=body.tenant, api_token=token)


@router.post(
    "/enrollment-codes", status_code=201, response_model=EnrollmentCodeCreated
)
async def create_enrollment_code(body: EnrollmentCodeCreate, ctx: Ctx) -> EnrollmentCodeCreated:
    code, expires_at = await ctx.run(
        ops.create_enrollment_code, ctx.store, body.tenant, body.agent_group, body.ttl, ctx.clock()
    )
    log.info("enrollment_code.created", tenant=body.tenant, group=body.agent_group)
    return EnrollmentCodeCreated(
        code=code, tenant=body.tenant, agent_group=body.agent_group, expires_at=expires_at
    )


@router.post("/portal-keys", status_code=201, response_model=Ok)
async def add_portal_key(body: PortalKeyCreate, ctx: Ctx) -> Ok:
    key = PortalKey(body.kid, body.public_key, body.not_before, body.not_after)
    await ctx.run(ops.add_portal_key, ctx.store, body.tenant, key, ctx.clock())
    log.info("portal_key.added", tenant=body.tenant, kid=body.kid)
    return Ok()


@router.delete("/agents/{agent_id}", response_model=Ok)
async def remove_agent(agent_id: str, ctx: Ctx) -> Ok:
    """The agent can no longer authenticate; its leases go back to the queue."""
    await ctx.run(ctx.store.remove_agent, agent_id, ctx.clock())
    ctx.cache.forget_agent(agent_id)
    log.info("agent.removed", agent_id=agent_id)
    return Ok()


@router.get("/agents", response_model=AgentHealthList)
async def list_agent_health(
    ctx: Ctx,
    tenant: str = Query(min_length=1, max_length=128),
    group: str | None = Query(None, min_length=1, max_length=128),
) -> AgentHealthList:
    """Each agent's version, last heartbeat, online state and directory health."""
    since = ctx.clock() - ctx.settings.presence_timeout
    agents = await ctx.run(agent_health, ctx.store, tenant, group, online_since=since)
    return AgentHealthList(tenant=tenant, agents=agents)
