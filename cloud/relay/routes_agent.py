"""Agent side of the relay: enroll once, then signed calls to lease, ask for a write
permit, renew, release, post results, heartbeat and fetch portal keys.

The write permit (`POST /v1/agent/leases/{lease_id}/permit`) is the agent's fence
before it writes: granted only to the lease holder, only when no other permit for the
same directory user is open, and only when no newer request for that user was
permitted (cloud/relay/store.py explains the rules and docs/protocol.md the wire).

A lease poll doubles as presence: an agent waiting in a long-poll is online. The
lease itself is the store's atomic compare-and-set; the wake-up only shortens the wait.

Routes let store errors (LeaseLost, EnrollmentError) propagate: cloud/relay/errors.py
answers them (409 lease_lost; 403 with the enrollment refusal's reason).
"""

from __future__ import annotations

import asyncio
import json
import secrets

import structlog
from fastapi import APIRouter, Query, Request, Response

from cloud.relay.auth import RelayHTTPError, hash_secret, normalize_code, validate_sign_key
from cloud.relay.deps import (
    Ctx,
    EnrollGate,
    LongPollSlot,
    RelayContext,
    SignedAgent,
    VerifiedHeartbeat,
    client_gone,
)
from cloud.relay.errors import ERROR_RESPONSES
from cloud.relay.models import (
    EnrollBody,
    Enrolled,
    LeaseBatch,
    LeaseBody,
    LeaseRenewed,
    Ok,
    PermitAnswer,
    PermitAsk,
    PermitBatch,
    PermitBatchAnswer,
    PermitBatchAnswers,
    PortalKeyBody,
    PortalKeys,
    PublicKeysBody,
    ResultBatch,
    ResultOutcome,
    ResultOutcomes,
    ResultPost,
    ServerTime,
)
from cloud.relay.notify import group_key, request_key, woken_first
from cloud.relay.store import AgentRecord, LeaseLost

log = structlog.get_logger("writeback.relay")
router = APIRouter(prefix="/v1", tags=["agent"], responses=ERROR_RESPONSES)
_MAX_STATUS_BYTES = 4096


@router.post("/agents/enroll", response_model=Enrolled, dependencies=[EnrollGate])
async def enroll(body: EnrollBody, ctx: Ctx) -> Enrolled:
    """Redeem a one-time code: register the agent's public keys, get its identity."""
    sign_key = validate_sign_key(body.public_keys.get("sign_key"))
    if len(json.dumps(body.public_keys)) > _MAX_STATUS_BYTES * 4:
        raise RelayHTTPError(413, "too_large", "public_keys too large")
    agent_id = "agt_" + secrets.token_hex(12)
    now = ctx.clock()
    agent = await ctx.run(
        ctx.store.enroll,
        hash_secret(normalize_code(body.code)),
        agent_id,
        body.name,
        body.public_keys,
        sign_key,
        now=now,
    )
    keys = await ctx.run(ctx.store.portal_keys, agent.tenant, now)
    log.info("agent.enrolled", agent_id=agent_id, tenant=agent.tenant, group=agent.agent_group)
    return Enrolled(
        agent_id=agent_id,
        tenant=agent.tenant,
        agent_group=agent.agent_group,
        portal_keys=[PortalKeyBody(**k.as_dict()) for k in keys],
    )


_MAX_BATCH = 16


async def _lease_up_to(
    request: Request, agent: AgentRecord, ctx: RelayContext, wait: float, most: int
) -> list[LeaseBody]:
    """Long-poll until at least one request is leasable, then take up to `most`."""
    settings = ctx.settings
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, settings.max_lease_wait)
    key = group_key(agent.tenant, agent.agent_group)
    while True:
        now = ctx.clock()
        await ctx.touch(agent.agent_id, now)  # throttled: at most every few seconds
        leased: list[LeaseBody] = []
        while len(leased) < most:
            grant = await ctx.run(
                ctx.store.lease,
                agent.tenant,
                agent.agent_group,
                agent.agent_id,
                "lse_" + secrets.token_urlsafe(16),
                now=now,
                lease_timeout=settings.lease_timeout,
            )
            if grant is None:
                break
            ctx.metrics.leased(agent.tenant, grant.request_id, now)
            log.debug(
                "request.leased",
                tenant=agent.tenant,
                group=agent.agent_group,
                agent_id=agent.agent_id,
                request_id=grant.request_id,
                lease_id=grant.lease_id,
            )
            leased.append(
                LeaseBody(
                    lease_id=grant.lease_id,
                    request_id=grant.request_id,
                    lease_expires_at=grant.expires_at,
                    envelope=grant.envelope.decode("utf-8"),
                )
            )
        if leased:
            return leased
        remaining = deadline - loop.time()
        if remaining <= 0 or ctx.stopping:
            return []
        woken = await ctx.notifier.wait(key, min(settings.poll_interval, remaining))
        if client_gone(request):
            if woken:  # that wake-up was for a request: another poll should take it
                ctx.notifier.pass_on(key)
            return []  # nobody would receive a lease now; don't take one


@router.post(
    "/agent/lease",
    responses={200: {"model": LeaseBody}, 204: {"description": "nothing to do"}},
    dependencies=[LongPollSlot],
)
async def lease(
    request: Request,
    agent: SignedAgent,
    ctx: Ctx,
    wait: float = Query(0.0, ge=0, description="long-poll up to this many seconds (max 30)"),
) -> Response:
    leased = await _lease_up_to(request, agent, ctx, wait, 1)
    if not leased:
        return Response(status_code=204)
    return Response(leased[0].model_dump_json(), media_type="application/json")


@router.post(
    "/agent/leases",
    responses={200: {"model": LeaseBatch}, 204: {"description": "nothing to do"}},
    dependencies=[LongPollSlot],
)
async def lease_many(
    request: Request,
    agent: SignedAgent,
    ctx: Ctx,
    wait: float = Query(0.0, ge=0, description="long-poll up to this many seconds (max 30)"),
    most: int = Query(1, alias="max", ge=1, le=_MAX_BATCH, description="lease up to this many"),
) -> Response:
    """Batch leasing: wait for the first leasable request, then take up to `max`."""
    leased = await _lease_up_to(request, agent, ctx, wait, most)
    if not leased:
        return Response(status_code=204)
    return Response(LeaseBatch(leases=leased).model_dump_json(), media_type="application/json")


@router.post("/agent/leases/{lease_id}/renew", response_model=LeaseRenewed)
async def renew(lease_id: str, request: Request, agent: SignedAgent, ctx: Ctx) -> LeaseRenewed:
    now = ctx.clock()
    expires_at = await ctx.run(
        ctx.store.renew, lease_id, agent.agent_id, now, ctx.settings.lease_timeout
    )
    await ctx.touch(agent.agent_id, now)
    return LeaseRenewed(lease_id=lease_id, lease_expires_at=expires_at)


@router.post("/agent/leases/{lease_id}/permit", response_model=PermitAnswer)
async def permit(lease_id: str, body: PermitAsk, agent: SignedAgent, ctx: Ctx) -> PermitAnswer:
    """May this lease write to this user now? Renews the lease whatever the answer."""
    now = ctx.clock()
    answer = await ctx.run(
        ctx.store.permit,
        lease_id,
        agent.agent_id,
        body.user_key,
        ordered=body.ordered,
        now=now,
        lease_timeout=ctx.settings.lease_timeout,
        marker=body.marker,
        late_answer_grace=ctx.settings.late_answer_grace,
    )
    log.info(
        "permit." + ("taken_over" if answer.taken_over else answer.decision.value),
        tenant=agent.tenant,
        agent_id=agent.agent_id,
        lease_id=lease_id,
    )
    return PermitAnswer(
        decision=answer.decision.value,
        lease_expires_at=answer.lease_expires_at,
        lease_seconds=max(0.0, answer.lease_expires_at - now),
    )


@router.post("/agent/permits", response_model=PermitBatchAnswers)
async def permits(body: PermitBatch, agent: SignedAgent, ctx: Ctx) -> PermitBatchAnswers:
    """Several write permits in one call, each decided exactly as the single permit
    call decides it (its own store transaction, in the order given)."""
    answers: list[PermitBatchAnswer] = []
    for item in body.permits:
        try:
            answer = await permit(item.lease_id, item, agent, ctx)
        except LeaseLost:
            answers.append(PermitBatchAnswer(lease_id=item.lease_id, error="lease_lost"))
            continue
        answers.append(PermitBatchAnswer(lease_id=item.lease_id, **answer.model_dump()))
    return PermitBatchAnswers(answers=answers)


@router.post("/agent/leases/{lease_id}/release", response_model=Ok)
async def release(lease_id: str, agent: SignedAgent, ctx: Ctx) -> Ok:
    """Give a request back unprocessed (graceful shutdown): another agent gets it now."""
    request_id = await ctx.run(ctx.store.release, lease_id, agent.agent_id)
    ctx.notifier.notify(group_key(agent.tenant, agent.agent_group), 1)  # one lease poll
    log.info(
        "request.released",
        tenant=agent.tenant,
        agent_id=agent.agent_id,
        request_id=request_id,
        lease_id=lease_id,
    )
    return Ok()


def _result_bytes(body: ResultPost, max_bytes: int) -> bytes:
    if isinstance(body.result, str):
        raw = body.result.encode("utf-8")
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise RelayHTTPError(422, "malformed_result", "result is not JSON text") from exc
        if not isinstance(parsed, dict):
            raise RelayHTTPError(422, "malformed_result", "result must be a JSON object")
    else:
        raw = json.dumps(body.result, separators=(",", ":")).encode("utf-8")
    if len(raw) > max_bytes:
        raise RelayHTTPError(413, "too_large", f"result over {max_bytes} bytes")
    return raw


async def _store_result(
    body: ResultPost, raw: bytes, agent: AgentRecord, ctx: RelayContext, *, wake: bool = True
) -> None:
    """Raises LeaseLost; wakes the portal's long-poll on success (unless `wake` is
    False: the caller wakes it)."""
    try:
        stored = await ctx.run(
            ctx.store.complete, body.lease_id, body.request_id, agent.agent_id, raw, ctx.clock()
        )
    except LeaseLost:
        log.warning(
            "result.lease_lost",
            tenant=agent.tenant,
            agent_id=agent.agent_id,
            request_id=body.request_id,
            lease_id=body.lease_id,
        )
        raise
    if wake:
        ctx.notifier.notify(request_key(agent.tenant, body.request_id))
        await woken_first()
    log.debug(
        "result.stored" if stored else "result.repeated",
        tenant=agent.tenant,
        agent_id=agent.agent_id,
        request_id=body.request_id,
    )


@router.post("/agent/results", response_model=Ok)
async def post_result(body: ResultPost, agent: SignedAgent, ctx: Ctx) -> Ok:
    raw = _result_bytes(body, ctx.settings.max_body_bytes)
    await _store_result(body, raw, agent, ctx)
    return Ok()


@router.post("/agent/results/batch", response_model=ResultOutcomes)
async def post_results(body: ResultBatch, agent: SignedAgent, ctx: Ctx) -> ResultOutcomes:
    """Several results in one call; each is stored or refused on its own. The portal's
    long-polls are woken once all are stored, so a poll waiting for several of them
    (results:wait) answers with all of them rather than with the first."""
    outcomes: list[ResultOutcome] = []
    stored: list[str] = []
    try:
        for item in body.results:
            try:
                raw = _result_bytes(item, ctx.settings.max_body_bytes)
                await _store_result(item, raw, agent, ctx, wake=False)
                stored.append(item.request_id)
                outcome = "stored"
            except LeaseLost:
                outcome = "lease_lost"
            except RelayHTTPError as exc:
                outcome = exc.code
            outcomes.append(ResultOutcome(request_id=item.request_id, outcome=outcome))
    finally:  # also when a store error ends the call: those stored are answered
        for request_id in stored:
            ctx.notifier.notify(request_key(agent.tenant, request_id))
    if stored:
        await woken_first()
    return ResultOutcomes(outcomes=outcomes)


@router.post("/agent/heartbeat", response_model=ServerTime)
async def heartbeat(status: VerifiedHeartbeat, agent: SignedAgent, ctx: Ctx) -> ServerTime:
    now = ctx.clock()
    await ctx.run(ctx.store.touch_agent, agent.agent_id, now, status)
    return ServerTime(server_time=now)


@router.get("/agent/portal-keys", response_model=PortalKeys)
async def portal_keys(agent: SignedAgent, ctx: Ctx) -> PortalKeys:
    keys = await ctx.run(ctx.store.portal_keys, agent.tenant, ctx.clock())
    return PortalKeys(keys=[PortalKeyBody(**k.as_dict()) for k in keys])


@router.put("/agent/keys", response_model=Ok)
async def update_keys(body: PublicKeysBody, agent: SignedAgent, ctx: Ctx) -> Ok:
    """Encryption-key rotation: the agent registers its new public record, signed with
    its (unchanged) signing key; portals seal new requests to it from now on."""
    if body.public_keys.get("sign_key") != agent.sign_key:
        raise RelayHTTPError(
            422,
            "sign_key_change_unsupported",
            "the signing key cannot be rotated in place: enroll the agent again",
        )
    if len(json.dumps(body.public_keys)) > _MAX_STATUS_BYTES * 4:
        raise RelayHTTPError(413, "too_large", "public_keys too large")
    await ctx.run(ctx.store.update_public_keys, agent.agent_id, body.public_keys)
    log.info("agent.keys_updated", agent_id=agent.agent_id, tenant=agent.tenant)
    return Ok()
