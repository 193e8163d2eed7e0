"""Which routes the hot path (hotpath.py) answers, bound to the routes' own functions.

These are the calls a password reset makes: the portal's submit and result wait, the
agent's lease, permit and result. Each entry calls the very function FastAPI calls
for that route (routes_agent.py, routes_portal.py), after what FastAPI would have
done first: the route's dependencies (an agent's lease poll holds a long-poll slot,
deps.long_poll_slot) and its query and body parameters. A query parameter is taken
here only in a plain form (digits, a decimal point) within its bounds; anything else
goes to FastAPI, which answers it (or refuses it) in its own way. The routes'
modules keep their helpers private (`_MAX_BATCH`); this module is their
second caller, by design.
"""

from __future__ import annotations

import re
from typing import cast

from pydantic import BaseModel
from starlette.responses import Response

from cloud.relay import routes_agent, routes_portal
from cloud.relay.hotpath import HotCall, HotRoute, HotRoutes, NotPlain
from cloud.relay.models import (
    PermitAsk,
    PermitBatch,
    ResultBatch,
    ResultPost,
    ResultsWait,
    SubmitBatch,
)
from cloud.relay.store import AgentRecord

_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")
_SMALL_INT = re.compile(r"[0-9]{1,2}")


def _wait(text: str) -> float:
    """`wait`: FastAPI's Query(0.0, ge=0), in its plain form."""
    if _SECONDS.fullmatch(text) is None:
        raise NotPlain("wait")
    return float(text)


def _most(text: str) -> int:
    """`max` of a batch lease: Query(1, ge=1, le=16)."""
    if _SMALL_INT.fullmatch(text) is None or not 1 <= int(text) <= routes_agent._MAX_BATCH:
        raise NotPlain("max")
    return int(text)


_WAIT = {"wait": (_wait, 0.0)}


def _agent(call: HotCall) -> AgentRecord:
    return cast(AgentRecord, call.identity)


def _tenant(call: HotCall) -> str:
    return cast(str, call.identity)


async def _lease(call: HotCall) -> Response:
    agent = _agent(call)
    async with call.ctx.limits.long_poll(agent.tenant, "agents"):  # deps.long_poll_slot
        return await routes_agent.lease(call.request, agent, call.ctx, call.query["wait"])


async def _lease_many(call: HotCall) -> Response:
    agent = _agent(call)
    async with call.ctx.limits.long_poll(agent.tenant, "agents"):  # deps.long_poll_slot
        return await routes_agent.lease_many(
            call.request, agent, call.ctx, call.query["wait"], call.query["max"]
        )


async def _permit(call: HotCall) -> BaseModel:
    return await routes_agent.permit(call.param, call.body, _agent(call), call.ctx)


async def _permits(call: HotCall) -> BaseModel:
    return await routes_agent.permits(call.body, _agent(call), call.ctx)


async def _post_result(call: HotCall) -> BaseModel:
    return await routes_agent.post_result(call.body, _agent(call), call.ctx)


async def _post_results(call: HotCall) -> BaseModel:
    return await routes_agent.post_results(call.body, _agent(call), call.ctx)


async def _submit(call: HotCall) -> BaseModel | Response:
    wait = cast(float, call.query["wait"])
    return await routes_portal.submit_body(call.raw, call.request, _tenant(call), call.ctx, wait)


async def _submit_many(call: HotCall) -> BaseModel:
    return await routes_portal.submit_many(call.body, _tenant(call), call.ctx)


async def _wait_results(call: HotCall) -> BaseModel:
    return await routes_portal.wait_results(
        call.body, call.request, _tenant(call), call.ctx, call.query["wait"]
    )


async def _result(call: HotCall) -> Response:
    return await routes_portal.result(
        call.param, call.request, _tenant(call), call.ctx, call.query["wait"]
    )


HOT_ROUTES = HotRoutes(
    exact={
        ("POST", "/v1/agent/lease"): HotRoute("lease", _lease, query=_WAIT),
        ("POST", "/v1/agent/leases"): HotRoute(
            "lease_many", _lease_many, query={**_WAIT, "max": (_most, 1)}
        ),
        ("POST", "/v1/agent/permits"): HotRoute("permits", _permits, model=PermitBatch),
        ("POST", "/v1/agent/results"): HotRoute("post_result", _post_result, model=ResultPost),
        ("POST", "/v1/agent/results/batch"): HotRoute(
            "post_results", _post_results, model=ResultBatch
        ),
        ("POST", "/v1/requests"): HotRoute("submit", _submit, status=202, query=_WAIT),
        ("POST", "/v1/requests:batch"): HotRoute("submit_many", _submit_many, model=SubmitBatch),
        ("POST", "/v1/requests/results:wait"): HotRoute(
            "wait_results", _wait_results, model=ResultsWait, query=_WAIT
        ),
    },
    templated=(
        ("POST", "/v1/agent/leases/", "/permit", HotRoute("permit", _permit, model=PermitAsk)),
        ("GET", "/v1/requests/", "/result", HotRoute("result", _result, query=_WAIT)),
    ),
)
