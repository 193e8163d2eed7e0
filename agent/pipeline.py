"""One request, from envelope bytes to a signed result (DESIGN.md section 1).

    verify (size, parse, key, signature, tenant/group, time) -> journal claim (dedupe)
    -> decrypt -> route -> find user -> scope (not_managed?) -> state checks
    -> [fence: renew the lease] -> journal "writing" -> ONE directory write
    -> drop the secret -> signed result -> journal "done"

Why the journal sits before decryption: a replayed request is answered with the
stored result and never decrypted or written again. Why the lease is renewed right
before the write: with several agents, a request whose lease lapsed may be handed
to another agent; renewing first (and aborting on LeaseLost) means only the lease
holder writes.

Errors are translated in exactly two places: connectors turn ldap3 into
`DirectoryError` (connectors/_ldap.py), and `_run` turns `DirectoryError` into a
result status here. Unexpected exceptions become `internal_error` with the
exception type only; the traceback goes to the (redacting) log.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ldap3.core import exceptions as lexc
from pydantic import SecretStr

from agent.config import DirectoryConfig, Settings
from agent.journal import ClaimKind, Journal
from agent.routing import DirectoryRouter
from agent.scope import not_managed_reason
from connectors.base import (
    AccountDisabled,
    DirectoryConnector,
    DirectoryError,
    DirectoryUnavailable,
    LookupKind,
    PolicyViolation,
    UserRef,
    make_connector,
)
from wire.errors import Rejected
from wire.keys import AgentKeys
from wire.messages import RequestHeader, SecretPart
from wire.results import make_result, sign_result
from wire.status import EVENT_IDS, NotManagedReason, RejectReason, Status
from wire.verify import RequestVerifier

T = TypeVar("T")

# Socket faults that prove the write never left this machine: safe to retry.
_NOT_SENT = (lexc.LDAPSocketOpenError, lexc.LDAPServerPoolExhaustedError, lexc.LDAPStartTLSError)


def _required(secret: SecretStr | None) -> SecretStr:
    """SecretPart.check_op guarantees the secrets an op needs; this says so to mypy."""
    if secret is None:
        raise DirectoryError("the request carries no password for this op")
    return secret


class LeaseGone(Exception):
    """The fence failed: another agent may hold this request now. Write nothing."""


@dataclass(frozen=True)
class Identity:
    """Who this agent is, from its enrollment record."""

    agent_id: str
    tenant: str
    agent_group: str


@dataclass(frozen=True)
class _Run:
    """When and how one request is being handled (for the result and the audit line)."""

    received_at: int
    started: float  # time.monotonic()
    log: Any


@dataclass
class Outcome:
    status: Status
    reason: str | None = None
    detail: str = ""
    dc: str | None = None
    policy: dict[str, Any] | None = None
    directory: str | None = None
    user_dn: str | None = None
    applied: tuple[str, ...] = field(default_factory=tuple)


class ConnectorPool:
    """One connector per (worker thread, directory): ldap3 objects are not shared
    across threads. Remembers every connector so shutdown can close them all."""

    def __init__(
        self, factory: Callable[[DirectoryConfig], DirectoryConnector] = make_connector
    ) -> None:
        self._factory = factory
        self._local = threading.local()
        self._all: list[DirectoryConnector] = []
        self._lock = threading.Lock()

    def get(self, directory: DirectoryConfig) -> DirectoryConnector:
        mine: dict[str, DirectoryConnector] | None = getattr(self._local, "conns", None)
        if mine is None:
            mine = self._local.conns = {}
        conn = mine.get(directory.name)
        if conn is None:
            conn = mine[directory.name] = self._factory(directory)
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except DirectoryError:
                pass  # closing after a fault: nothing left to release


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        identity: Identity,
        keys: AgentKeys,
        verifier: RequestVerifier,
        journal: Journal,
        connectors: ConnectorPool,
        log: Any,
        metrics: Any | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._identity = identity
        self._keys = keys
        self._verifier = verifier
        self._journal = journal
        self._connectors = connectors
        self._router = DirectoryRouter(settings.directories)
        self._log = log
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep

    # ------------------------------------------------------------------ entry point

    def handle(
        self,
        raw: bytes,
        *,
        request_id_hint: str | None = None,
        fence: Callable[[], None] | None = None,
    ) -> bytes | None:
        """Signed result bytes, or None when this agent must not answer (the request
        is being handled by another worker, or the lease was lost before writing)."""
        received_at = int(self._clock())
        started = time.monotonic()
        try:
            verified = self._verifier.verify(raw)
        except Rejected as exc:
            return self._rejected(exc, request_id_hint, received_at, started)

        header = verified.header
        log = self._log.bind(request_id=header.id, op=header.op, user=header.user.value)
        claim = self._journal.claim(header.id, op=header.op, user_ref=header.user.value)
        if claim.kind is ClaimKind.DONE:
            log.info("request.replayed", status="answered_before")
            if claim.result is not None:
                return claim.result
        if claim.kind is ClaimKind.BUSY:
            log.info("request.duplicate_in_flight")
            return None
        if claim.kind is ClaimKind.IN_DOUBT:
            outcome = Outcome(
                Status.IN_DOUBT,
                "interrupted",
                "the agent stopped during this write; it may or may not have been applied",
            )
            return self._finish(
                header, verified.request_hash, outcome, _Run(received_at, started, log)
            )
        log.info("request.received")

        try:
            secrets = verified.open()
        except Rejected as exc:
            outcome = Outcome(Status.REJECTED, exc.reason.value, exc.detail)
            return self._finish(
                header, verified.request_hash, outcome, _Run(received_at, started, log)
            )
        try:
            outcome = self._run(header, secrets, fence)
        except LeaseGone:
            self._journal.forget(header.id)
            log.warning("request.lease_lost")
            return None
        finally:
            del secrets  # the only reference to the passwords
        return self._finish(header, verified.request_hash, outcome, _Run(received_at, started, log))

    # ------------------------------------------------------------------ the work

    def _run(
        self, header: RequestHeader, secrets: SecretPart, fence: Callable[[], None] | None
    ) -> Outcome:
        route = self._router.route(LookupKind(header.user.kind), header.user.value)
        if route is None:
            return Outcome(
                Status.NOT_MANAGED,
                NotManagedReason.NO_DIRECTORY,
                "no configured directory serves this user",
            )
        directory = route.directory
        connector = self._connectors.get(directory)
        deadline = min(float(header.exp), time.time() + self._settings.directory_deadline_seconds)
        written = False
        found: UserRef | None = None
        try:
            user = found = self._retry(lambda: connector.find_user(route.query), deadline)
            reason = not_managed_reason(
                writeback_enabled=self._settings.writeback_enabled,
                directory=directory,
                user=user,
                groups=lambda: self._retry(lambda: connector.group_dns(user), deadline),
            )
            if reason is not None:
                return Outcome(
                    Status.NOT_MANAGED,
                    reason,
                    f"{user.dn}: {reason.value}",
                    directory=directory.name,
                )
            if user.disabled:
                raise AccountDisabled(f"{user.dn} is disabled")
            if header.op == "authenticate":
                return self._authenticate(connector, user, secrets, deadline, directory.name)
            if header.op == "preflight":
                policy = self._retry(lambda: connector.password_policy(user), deadline)
                detail = "account is locked" if user.locked else ""
                return Outcome(
                    Status.SUCCEEDED,
                    None,
                    detail,
                    policy=policy.describe(),
                    directory=directory.name,
                )
            superseded = self._superseded(header, user)
            if superseded is not None:
                return superseded
            if fence is not None:
                fence()  # raises LeaseGone
            self._journal.mark_writing(header.id)
            written = True
            outcome = self._write(header, secrets, connector, user, deadline)
            outcome.directory = directory.name
            return outcome
        except PolicyViolation as exc:
            # The portal shows the requirements next to the refusal; a refusal from
            # the directory itself (history) carries no policy, so read it.
            described = (
                exc.policy.describe() if exc.policy else self._describe_policy(connector, found)
            )
            return Outcome(exc.status, exc.reason, exc.detail, exc.dc, described, directory.name)
        except DirectoryUnavailable as exc:
            if written:
                return Outcome(
                    Status.IN_DOUBT, "directory_fault", exc.detail, exc.dc, directory=directory.name
                )
            return Outcome(exc.status, None, exc.detail, exc.dc, directory=directory.name)
        except DirectoryError as exc:
            return Outcome(exc.status, exc.reason, exc.detail, exc.dc, directory=directory.name)

    def _write(
        self,
        header: RequestHeader,
        secrets: SecretPart,
        connector: DirectoryConnector,
        user: UserRef,
        deadline: float,
    ) -> Outcome:
        op = header.op
        if op == "reset":
            new = _required(secrets.new_password)
            result = self._retry_unsent(
                lambda: connector.reset_password(
                    user, new, unlock=header.options.unlock, must_change=header.options.must_change
                ),
                deadline,
            )
        elif op == "change":
            old, new = _required(secrets.old_password), _required(secrets.new_password)
            result = self._retry_unsent(lambda: connector.change_password(user, old, new), deadline)
        elif op == "unlock":
            result = self._retry_unsent(lambda: connector.unlock(user), deadline)
        else:  # the message model admits no other op
            raise DirectoryError(f"unsupported op {op!r}")
        return Outcome(
            Status.SUCCEEDED, None, ", ".join(result.applied), result.dc, applied=result.applied
        )

    def _authenticate(
        self,
        connector: DirectoryConnector,
        user: UserRef,
        secrets: SecretPart,
        deadline: float,
        directory: str,
    ) -> Outcome:
        """Op authenticate: bind as the user. No write permit, no journal "writing":
        nothing is written. Retried only when the bind provably never left this
        machine, so one attempt never counts twice toward the directory's lockout.
        Answers succeeded or raises InvalidCredentials / AccountLocked /
        AccountDisabled / PasswordExpired / DirectoryUnavailable (caught by _run)."""
        password = _required(secrets.old_password)
        self._retry_unsent(lambda: connector.authenticate(user, password), deadline)
        return Outcome(Status.SUCCEEDED, None, f"{user.dn}: bind ok", directory=directory)

    @staticmethod
    def _describe_policy(
        connector: DirectoryConnector, user: UserRef | None
    ) -> dict[str, Any] | None:
        if user is None:
            return None
        try:
            return connector.password_policy(user).describe()
        except DirectoryError:
            return None  # the refusal itself is what matters; the policy is a courtesy

    def _superseded(self, header: RequestHeader, user: UserRef) -> Outcome | None:
        """A password set after the request was issued means someone (the user, an
        admin, or another agent that already served this request) got there first;
        re-applying it blindly could undo their change."""
        if header.op not in ("reset", "change") or user.pwd_last_set is None:
            return None
        issued = dt.datetime.fromtimestamp(header.iat + 1, dt.UTC)
        if user.pwd_last_set >= issued:
            return Outcome(
                Status.IN_DOUBT,
                RejectReason.SUPERSEDED.value,
                f"password of {user.dn} was set at {user.pwd_last_set.isoformat()}, "
                "after the request was issued",
            )
        return None

    # ------------------------------------------------------------------ retries

    def _retry(self, call: Callable[[], T], deadline: float) -> T:
        """Retry reads across DCs with backoff until the request's deadline."""
        delay = 0.25
        while True:
            try:
                return call()
            except DirectoryUnavailable:
                if time.time() + delay >= deadline:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, 4.0)

    def _retry_unsent(self, call: Callable[[], T], deadline: float) -> T:
        """Retry a write only when the fault proves nothing was sent; otherwise the
        caller reports in_doubt rather than risk writing twice."""
        delay = 0.25
        while True:
            try:
                return call()
            except DirectoryUnavailable as exc:
                if not isinstance(exc.__cause__, _NOT_SENT) or time.time() + delay >= deadline:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, 4.0)

    # ------------------------------------------------------------------ results

    def _finish(
        self, header: RequestHeader, request_hash: str, outcome: Outcome, run: _Run
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
        self._journal.finish(header.id, status=outcome.status.value, result=signed)
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

    def _rejected(
        self, exc: Rejected, hint: str | None, received_at: int, started: float
    ) -> bytes | None:
        """A refused envelope is answered (signed) when it has an id to answer to, but
        never journaled: a forged copy must not poison the real request's entry."""
        request_id = exc.request_id or hint
        self._log.warning(
            "request.rejected",
            event_id=EVENT_IDS[Status.REJECTED],
            request_id=request_id,
            reason=exc.reason.value,
            detail=exc.detail,
        )
        if self._metrics is not None:
            self._metrics.rejected(exc.reason.value)
        if request_id is None:
            return None
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
            return None  # the hint is not a request id we can answer to
        return sign_result(body, self._keys)
