"""Operations endpoints without authentication, for load balancers and Prometheus:
/healthz (the process answers), /readyz (the database answers too), /metrics."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from cloud.relay.deps import Ctx
from cloud.relay.models import ErrorBody

log = structlog.get_logger("writeback.relay")
# Probes have short deadlines; a database that takes longer than this is not ready.
_READY_TIMEOUT = 2.0
router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers. Touches nothing else."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(ctx: Ctx) -> Response:
    """Ready to serve: the database answers a query."""
    if ctx.stopping:
        return JSONResponse({"error": "stopping", "message": "shutting down"}, status_code=503)
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            await ctx.run(ctx.store.ping)
    except Exception as exc:  # noqa: BLE001 - any database fault means "not ready"
        log.warning("readyz.database_unavailable", error=type(exc).__name__)
        return JSONResponse(
            {"error": "database_unavailable", "message": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(ctx: Ctx) -> Response:
    body = await ctx.run(ctx.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
