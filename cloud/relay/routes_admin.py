"""Admin API (Authorization: Bearer <admin token from --admin-token-file>).

The same operations as the CLI's admin subcommands, for deployments where the
operator cannot reach the database file (containers, PostgreSQL), and for tests.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter

from cloud.relay import admin as ops
from cloud.relay.auth import RelayHTTPError
from cloud.relay.deps import Admin, Ctx
from cloud.relay.models import (
    EnrollmentCodeCreate,
    EnrollmentCodeCreated,
    ErrorBody,
    Ok,
    PortalKeyCreate,
    TenantCreate,
    TenantCreated,
)
from cloud.relay.store import DuplicateError, NotFoundError, PortalKey

log = structlog.get_logger("writeback.relay")
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Admin])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)
}


@router.post("/tenants", status_code=201, response_model=TenantCreated, responses=_ERRORS)
async def create_tenant(body: TenantCreate, ctx: Ctx) -> TenantCreated:
    """Returns the tenant's portal API token; it is shown only this once."""
    try:
        token = await ctx.run(ops.create_tenant, ctx.store, body.tenant, ctx.clock())
    except DuplicateError as exc:
        raise RelayHTTPError(409, "tenant_exists") from exc
    log.info("tenant.created", tenant=body.tenant)
    return TenantCreated(tenant=body.tenant, api_token=token)


@router.post(
    "/enrollment-codes", status_code=201, response_model=EnrollmentCodeCreated, responses=_ERRORS
)
async def create_enrollment_code(body: EnrollmentCodeCreate, ctx: Ctx) -> EnrollmentCodeCreated:
    try:
        code, expires_at = await ctx.run(
            ops.create_enrollment_code,
            ctx.store,
            body.tenant,
            body.agent_group,
            body.ttl,
            ctx.clock(),
        )
    except NotFoundError as exc:
        raise RelayHTTPError(404, "unknown_tenant") from exc
    log.info("enrollment_code.created", tenant=body.tenant, group=body.agent_group)
    return EnrollmentCodeCreated(
        code=code, tenant=body.tenant, agent_group=body.agent_group, expires_at=expires_at
    )


@router.post("/portal-keys", status_code=201, response_model=Ok, responses=_ERRORS)
async def add_portal_key(body: PortalKeyCreate, ctx: Ctx) -> Ok:
    key = PortalKey(body.kid, body.public_key, body.not_before, body.not_after)
    try:
        await ctx.run(ops.add_portal_key, ctx.store, body.tenant, key, ctx.clock())
    except ValueError as exc:
        raise RelayHTTPError(422, "invalid_portal_key", str(exc)) from exc
    except NotFoundError as exc:
        raise RelayHTTPError(404, "unknown_tenant") from exc
    except DuplicateError as exc:
        raise RelayHTTPError(409, "portal_key_exists") from exc
    log.info("portal_key.added", tenant=body.tenant, kid=body.kid)
    return Ok()


@router.delete("/agents/{agent_id}", response_model=Ok, responses=_ERRORS)
async def remove_agent(agent_id: str, ctx: Ctx) -> Ok:
    """The agent can no longer authenticate; its leases go back to the queue."""
    try:
        await ctx.run(ctx.store.remove_agent, agent_id, ctx.clock())
    except NotFoundError as exc:
        raise RelayHTTPError(404, "unknown_agent") from exc
    log.info("agent.removed", agent_id=agent_id)
    return Ok()
