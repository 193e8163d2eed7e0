"""Portal side of the relay: list a group's agents, submit a request, wait for its result
(or for several results in one long-poll).

A submit with no online agent is refused at once (503 no_agent_online) instead of
queued, so the user hears "try again later" now, not after the request's expiry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from cloud.relay import bounds
from cloud.relay.auth import RelayHTTPError
from cloud.relay.deps import Ctx, PortalTenant, RelayContext, client_gone
from cloud.relay.errors import ERROR_RESPONSES, translate_store_error
from cloud.relay.models import (
    ID_PATTERN,
    AgentInfo,
    AgentList,
    Pending,
    RequestResult,
    RequestResults,
    ResultsWait,
    RoutingEnvelope,
    SubmitBatch,
    SubmitOutcome,
    SubmitOutcomes,
    Submitted,
)
from cloud.relay.notify import group_key, request_key, woken_first
from cloud.relay.store import QueueStore, RequestState, RequestStatus, StoreError

log = structlog.get_logger("writeback.relay")
router = APIRouter(prefix="/v1", tags=["portal"], responses=ERROR_RESPONSES)

_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["header"],
    "description": "The signed+sealed request envelope. Only header.id, header.tenant, "
    "header.agent_group and header.exp are read; the rest is carried as is. Limits: "
    f"nesting depth {bounds.ENVELOPE.max_depth}, finite numbers only, at most "
    "max_body_bytes (64 KiB by default).",
    "properties": {
        "header": {
            "type": "object",
            "required": ["id", "tenant", "agent_group", "exp"],
            "properties": {
                "id": {"type": "string", "pattern": ID_PATTERN, "maxLength": 128},
                "tenant": {"type": "string", "minLength": 1, "maxLength": 128},
                "agent_group": {"type": "string", "minLength": 1, "maxLength": 128},
                "exp": {
                    "type": "number",
                    "description": "unix seconds, in the future and at most max_request_ttl "
                    "(900 s by default) ahead",
                },
            },
        },
        "sealed": {"type": "object"},
        "sig": {"type": "object"},
    },
}


@router.get("/groups/{agent_group}/agents", response_model=AgentList)
async def list_agents(agent_group: str, tenant: PortalTenant, ctx: Ctx) -> AgentList:
    """The enrolled agents of the group and their public keys: seal to each of them."""
    agents = await ctx.run(ctx.store.list_agents, tenant, agent_group)
    since = ctx.clock() - ctx.settings.presence_timeout
    servable = [a for a in agents if bounds.within(a.public_keys, bounds.PUBLIC_KEYS)]
    if len(servable) != len(agents):
        # Stored before registration was bounded: one bad record must not fail the list.
        skipped = sorted({a.agent_id for a in agents} - {a.agent_id for a in servable})
        log.warning("agents.record_out_of_bounds", tenant=tenant, agent_ids=skipped)
    return AgentList(
        tenant=tenant,
        agent_group=agent_group,
        agents=[
            AgentInfo(
                agent_id=a.agent_id,
                name=a.name,
                public_keys=a.public_keys,
                online=a.last_seen is not None and a.last_seen >= since,
                last_seen=a.last_seen,
                enrolled_at=a.enrolled_at,
            )
            for a in servable
        ],
    )


@router.post(
    "/requests",
    status_code=202,
    response_model=Submitted,
    responses={
        200: {
            "description": "with `wait`: the result envelope, as the agent posted it",
            "content": {"application/json": {}},
        },
        410: {"model": Pending, "description": "with `wait`: expired before any agent answered"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ENVELOPE_SCHEMA}},
        }
    },
)
async def submit(
    request: Request,
    tenant: PortalTenant,
    ctx: Ctx,
    wait: float = Query(
        0.0,
        ge=0,
        description="also long-poll the request's result up to this many seconds (max 60), "
        "answered as GET /v1/requests/{id}/result?wait= answers: 200 with the result "
        "envelope, 202 {id, state} still pending, 410 expired or in_doubt",
    ),
) -> Response | Submitted:
    """Queue a request. With `wait`, one call does what a submit and a result long-poll
    do: refusals of the submit are answered exactly as without it (nothing queued)."""
    return await submit_body(await request.body(), request, tenant, ctx, wait)


async def submit_body(
    body: bytes, request: Request, tenant: str, ctx: RelayContext, wait: float
) -> Response | Submitted:
    """POST /v1/requests once its body is read (the hot path calls it too): a submit,
    or with `wait` > 0 a submit and then the wait for its result in the same call. The
    long-poll slot is taken first, so a call refused for too many long-polls (429) has
    queued nothing."""
    if wait <= 0:
        submitted = await _submit(body, tenant, ctx)
        await woken_first()  # the agent's lease poll hears of it before the portal
        return submitted
    async with ctx.limits.long_poll(tenant, "portal"):
        submitted = await _submit(body, tenant, ctx)
        # Still pending at the end: {id, state}, as a submit answers.
        return await _result(
            submitted.id, request, tenant, ctx, wait, name_pending=True, just_queued=True
        )


@router.post("/requests:batch", response_model=SubmitOutcomes)
async def submit_many(body: SubmitBatch, tenant: PortalTenant, ctx: Ctx) -> SubmitOutcomes:
    """Several envelopes in one call (each the exact JSON text of one), each submitted
    and answered exactly as by POST /v1/requests, in order."""
    outcomes: list[SubmitOutcome] = []
    for text in body.envelopes:
        try:
            done = await _submit(text.encode("utf-8"), tenant, ctx)
        except StoreError as exc:
            refused = translate_store_error(exc, "submit")
        except RelayHTTPError as exc:
            refused = exc
        else:
            outcomes.append(SubmitOutcome(id=done.id, state=done.state))
            continue
        outcomes.append(
            SubmitOutcome(error=refused.code, status=refused.status, message=refused.message)
        )
    await woken_first()  # the lease polls woken for the batch take it before the portal hears
    return SubmitOutcomes(outcomes=outcomes)


async def _submit(body: bytes, tenant: str, ctx: RelayContext) -> Submitted:
    await ctx.limits.hit("submit", tenant)
    if len(body) > ctx.settings.max_body_bytes:
        raise RelayHTTPError(413, "too_large", f"envelope over {ctx.settings.max_body_bytes} bytes")
    try:
        doc = bounds.parse(body, bounds.ENVELOPE)
    except bounds.BoundsError as exc:
        raise RelayHTTPError(400, "invalid_json", str(exc), field=exc.path or None) from None
    try:
        header = RoutingEnvelope.model_validate(doc).header
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise RelayHTTPError(
            422, "malformed_envelope", f"bad or missing: {', '.join(fields)}"
        ) from exc
    if header.tenant != tenant:
        raise RelayHTTPError(403, "wrong_tenant", "header.tenant is not the caller's tenant")
    now = ctx.clock()
    if header.exp <= now:
        raise RelayHTTPError(422, "expired", "header.exp is in the past")
    if header.exp > now + ctx.settings.max_request_ttl:
        raise RelayHTTPError(
            422, "exp_too_far", f"header.exp more than {ctx.settings.max_request_ttl:.0f}s ahead"
        )
    since = now - ctx.settings.presence_timeout
    online = await ctx.cache.any_online(
        tenant,
        header.agent_group,
        lambda: ctx.read(ctx.store.any_agent_online, tenant, header.agent_group, since),
    )
    if not online:
        log.info(
            "request.no_agent_online", tenant=tenant, group=header.agent_group, request_id=header.id
        )
        raise RelayHTTPError(
            503,
            "no_agent_online",
            f"no agent of group {header.agent_group!r} is online",
            status="no_agent_online",
        )
    await ctx.run(
        ctx.store.add_request, tenant, header.id, header.agent_group, header.exp, body, now=now
    )
    ctx.metrics.submitted(tenant, header.id, now)
    ctx.notifier.notify(group_key(tenant, header.agent_group), 1)  # one lease poll takes it
    log.debug("request.queued", tenant=tenant, group=header.agent_group, request_id=header.id)
    return Submitted(id=header.id)


@router.get(
    "/requests/{request_id}/result",
    responses={
        200: {
            "description": "the result envelope, as the agent posted it",
            "content": {"application/json": {}},
        },
        202: {"model": Pending, "description": "still queued or leased at the end of the wait"},
        410: {"model": Pending, "description": "expired before any agent answered"},
    },
)
async def result(
    request_id: str,
    request: Request,
    tenant: PortalTenant,
    ctx: Ctx,
    wait: float = Query(0.0, ge=0, description="long-poll up to this many seconds (max 60)"),
) -> Response:
    if wait <= 0:
        return await _result(request_id, request, tenant, ctx, 0.0)
    async with ctx.limits.long_poll(tenant, "portal"):
        return await _result(request_id, request, tenant, ctx, wait)


async def _result(
    request_id: str,
    request: Request,
    tenant: str,
    ctx: RelayContext,
    wait: float,
    *,
    name_pending: bool = False,
    just_queued: bool = False,
) -> Response:
    """`just_queued`: this call queued the request and has not yielded since, so no
    agent can have answered it yet: the first status read is skipped, and the first
    wait is what lets the woken lease poll take it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, ctx.settings.max_result_wait)
    key = request_key(tenant, request_id)
    waited = False
    if just_queued and not ctx.stopping:
        await ctx.notifier.wait(key, min(ctx.settings.poll_interval, wait))
        waited = True
    while True:
        status = await ctx.read(ctx.store.request_status, tenant, request_id, ctx.clock())
        if status is None:
            raise RelayHTTPError(404, "unknown_request")
        if status.state is RequestState.DONE and status.result is not None:
            return Response(status.result, media_type="application/json")
        if status.state is RequestState.EXPIRED:
            return JSONResponse({"state": "expired", "error": "expired"}, status_code=410)
        if status.state is RequestState.IN_DOUBT:
            # Expired after a write was permitted, and its agent never answered.
            return JSONResponse(
                {
                    "state": "in_doubt",
                    "error": "in_doubt",
                    "message": "an agent was writing this request and did not answer",
                },
                status_code=410,
            )
        remaining = deadline - loop.time()
        # (A client that just asked is still there: the disconnect check, which costs
        # more than the status read, starts after the first wait.)
        if remaining <= 0 or ctx.stopping or (waited and client_gone(request)):
            pending = {"state": status.state.value}
            return JSONResponse(
                {"id": request_id, **pending} if name_pending else pending, status_code=202
            )
        await ctx.notifier.wait(key, min(ctx.settings.poll_interval, remaining))
        waited = True


@router.post("/requests/results:wait", response_model=RequestResults)
async def wait_results(
    body: ResultsWait,
    request: Request,
    tenant: PortalTenant,
    ctx: Ctx,
    wait: float = Query(0.0, ge=0, description="long-poll up to this many seconds (max 60)"),
) -> RequestResults:
    """Several results in one long-poll: answered as soon as at least one of the
    requests is settled (done, expired, in_doubt, or unknown), or when the wait is
    over, with the state of every one (and the result of each one done)."""
    ids = list(dict.fromkeys(body.ids))
    if wait <= 0:
        return await _results(ids, request, tenant, ctx, 0.0)
    async with ctx.limits.long_poll(tenant, "portal"):
        return await _results(ids, request, tenant, ctx, wait)


def _statuses(
    store: QueueStore, tenant: str, ids: list[str], now: float
) -> list[RequestStatus | None]:
    return store.request_statuses(tenant, ids, now)


def _answer(request_id: str, status: RequestStatus | None) -> RequestResult:
    if status is None:
        return RequestResult(id=request_id, state="unknown")
    if status.state is RequestState.DONE:
        if status.result is None:  # not readable yet: still the agent's
            return RequestResult(id=request_id, state=RequestState.LEASED.value)
        return RequestResult(id=request_id, state="done", result=status.result.decode("utf-8"))
    return RequestResult(id=request_id, state=status.state.value)


_PENDING = frozenset({RequestState.QUEUED.value, RequestState.LEASED.value})


async def _results(
    ids: list[str], request: Request, tenant: str, ctx: RelayContext, wait: float
) -> RequestResults:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, ctx.settings.max_result_wait)
    keys = [request_key(tenant, request_id) for request_id in ids]
    while True:
        statuses = await ctx.read(_statuses, ctx.store, tenant, ids, ctx.clock())
        answers = [_answer(i, s) for i, s in zip(ids, statuses, strict=True)]
        if any(a.state not in _PENDING for a in answers):
            return RequestResults(requests=answers)
        remaining = deadline - loop.time()
        if remaining <= 0 or ctx.stopping or client_gone(request):
            return RequestResults(requests=answers)
        await ctx.notifier.wait_any(keys, min(ctx.settings.poll_interval, remaining))
