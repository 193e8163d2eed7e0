"""The answer to one request: the signed result, the journal's last word, the audit
line and the request metrics.

Every request the agent verified is answered through `Answers.finish`, which signs
the result, closes the journal row and writes one audit line (`request.succeeded`
or `request.failed`) with status, op, user, dc, directory and duration_ms
(docs/errors.md lists the fields). A refused envelope is answered by
`Answers.rejected`: signed when it names an id, never journaled, audited as
`request.rejected` with the same fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.journal import Journal
from agent.permits import Deferred
from wire.errors import Rejected
from wire.keys import AgentKeys
from wire.messages import RequestHeader
from wire.results import make_result, sign_result
from wire.status import EVENT_IDS, Status


@dataclass(frozen=True)
class Identity:
    """Who this agent is, from its enrollment record."""

    agent_id: str
    tenant: str
    agent_group: str


@dataclass(frozen=True)
class Run:
    """When and how one request is being handled (for the result and the audit line)."""

    received_at: int
    started: float  # time.monotonic()
    log: Any


@dataclass
class Outcome:
    """What handling one request came to, before it is signed."""

    status: Status
    reason: str | None = None
    detail: str = ""
    dc: str | None = None
    policy: dict[str, Any] | None = None
    directory: str | None = None
    user_dn: str | None = None
    applied: tuple[str, ...] = field(default_factory=tuple)


class Answers:
    """Signs, journals and audits the answer to each request."""

    def __init__(
        self,
        *,
        identity: Identity,
        keys: AgentKeys,
        journal: Journal,
        metrics: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identity = identity
        self._keys = keys
        self._journal = journal
        self._metrics = metrics
        self._clock = clock

    def finish(
        self, header: RequestHeader, request_hash: str, outcome: Outcome, run: Run
    ) -> bytes:
        received_at, started, log = run.received_at, run.started, run.log
        body = make_result(
            request_id=header.id,
            request_hash=request_hash,
            agent_id=self._identity.agent_id,
            tenant=header.tenant,
            status=outcome.status,
            reason=str(outcome.reason) if outcome.reason is not None else None,
            detail=outcome.detail[:2000],
            dc=outcome.dc,
            policy=outcome.policy,
            received_at=received_at,
            completed_at=max(received_at, int(self._clock())),
        )
        signed = sign_result(body, self._keys)
        try:
            self._journal.finish(header.id, status=outcome.status.value, result=signed)
        except Exception:  # the answer still goes out; a restart says in_doubt
            log.exception("journal.write_failed")
        duration = time.monotonic() - started
        event = "request.succeeded" if outcome.status is Status.SUCCEEDED else "request.failed"
        log_method = (
            log.info if outcome.status in (Status.SUCCEEDED, Status.NOT_MANAGED) else log.warning
        )
        log_method(
            event,
            event_id=EVENT_IDS[outcome.status],
            status=outcome.status.value,
            reason=outcome.reason,
            dc=outcome.dc,
            directory=outcome.directory,
            detail=outcome.detail,
            duration_ms=round(duration * 1000, 1),
        )
        if self._metrics is not None:
            self._metrics.observe_request(header.op, outcome.status.value, duration)
        return signed

    def rejected(
        self, exc: Rejected, raw: bytes, hint: str | None, run: Run
    ) -> bytes | Deferred:
        """A refused envelope is answered (signed) when it has an id to answer to, but
        never journaled: a forged copy must not poison the real request's entry."""
        request_id = exc.request_id or hint
        op, user = _claimed_op_user(raw)
        run.log.warning(
            "request.rejected",
            event_id=EVENT_IDS[Status.REJECTED],
            request_id=request_id,
            op=op,
            user=user,
            status=Status.REJECTED.value,
            reason=exc.reason.value,
            dc=None,
            directory=None,
            detail=exc.detail,
            duration_ms=round((time.monotonic() - run.started) * 1000, 1),
        )
        if self._metrics is not None:
            self._metrics.rejected(exc.reason.value)
        if request_id is None:
            return Deferred.DROP
        received_at = run.received_at
        try:
            body = make_result(
                request_id=request_id,
                request_hash=exc.request_hash,
                agent_id=self._identity.agent_id,
                tenant=None,
                status=Status.REJECTED,
                reason=exc.reason.value,
                detail=exc.detail[:2000],
                received_at=received_at,
                completed_at=max(received_at, int(self._clock())),
            )
        except ValueError:
            return Deferred.DROP  # the hint is not a request id we can answer to
        return sign_result(body, self._keys)


def _claimed_op_user(raw: bytes) -> tuple[str | None, str | None]:
    """op and user as the (refused, so unverified) header claims them, for the audit
    line only; bounded, and None when the envelope does not even parse."""
    try:
        header = json.loads(raw)["header"]
        op, user = header.get("op"), header.get("user", {}).get("value")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, None
    return (
        op[:32] if isinstance(op, str) else None,
        user[:256] if isinstance(user, str) else None,
    )
