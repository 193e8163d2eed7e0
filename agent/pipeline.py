"""One request, from envelope bytes to a signed result (the verification order is
docs/protocol.md section 6; the statuses docs/errors.md).

    verify (size, parse, key, signature, tenant/group, time) -> [the user's lookup is
    sent ahead: the directory works on it meanwhile] -> journal claim (dedupe)
    [a write op: its journal "writing" mark, the one synced write, starts here and is
    made meanwhile] -> decrypt -> route -> find user (reads the answer to the search
    sent ahead) -> scope (not_managed?) -> state
    checks -> write permit from the relay (the fence) -> the mark durable -> ONE
    directory write -> drop the secret -> signed result -> journal "done" (a mark that
    no permit answer followed is undone first)

Why the journal sits before decryption: a replayed request is answered with the
stored result and never decrypted or written again, by this agent. Why the permit:
the journal is per agent, and with several agents a request whose lease lapsed is
handed to another one. The relay grants a permit for (tenant, user key) only to the
lease holder, only when no other permit for the user is open and no newer request
for the user was permitted, and it keeps the permit with the request; so a
redelivered request that was permitted before is answered in_doubt instead of being
written again, and an older request after a newer one is answered superseded. The
user key is a hash of the directory's immutable id (objectGUID / entryUUID), so
`alice`, `alice@corp` and `CORP\\alice` are one user, and the relay never learns the id.

Errors are translated in exactly two places: connectors turn ldap3 into
`DirectoryError` (connectors/_ldap.py), and `_run` turns `DirectoryError` into a
result status here. Every other exception becomes a signed `internal_error` (or
`in_doubt` once the write may have gone out) with the exception type only; the
traceback goes to the (redacting) log, and the journal row is closed either way.

Beside it: agent/outcome.py signs, journals and audits the answer; agent/retries.py
holds the read and write retry rules; agent/connector_pool.py the connectors lent to workers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import SecretStr

from agent.backlog import DirectoryBacklog
from agent.config import DirectoryConfig, Settings
from agent.connector_pool import ConnectorPool
from agent.fence import ask_to_write
from agent.journal import ClaimKind, Journal
from agent.outcome import Answers, Identity, Outcome, Run
from agent.permits import Deferred, GiveBack, PermitGate
from agent.retries import retry_reads, retry_unsent
from agent.routing import DirectoryRouter
from agent.scope import not_managed_reason
from agent.transports.base import LeaseLost
from connectors.base import (
    AccountDisabled,
    DirectoryConnector,
    DirectoryError,
    DirectoryUnavailable,
    DirectoryUser,
    LookupKind,
    PolicyViolation,
)
from wire.errors import Rejected
from wire.keys import AgentKeys
from wire.messages import RequestHeader, SecretPart
from wire.status import NotManagedReason, Status
from wire.verify import RequestVerifier

T = TypeVar("T")


def _required(secret: SecretStr | None) -> SecretStr:
    """SecretPart.check_op guarantees the secrets an op needs; this says so to mypy."""
    if secret is None:
        raise DirectoryError("the request carries no password for this op")
    return secret


# Ops that set a password: a newer one supersedes an older one for the same user.
_WRITE_OPS = frozenset({"reset", "change", "unlock"})
# Stop retrying a write this long before the permit's lease runs out.
_PERMIT_MARGIN = 2.0


@dataclass
class _State:
    """How far one request got, for the answer to an unexpected exception."""

    header: RequestHeader | None = None
    request_hash: str | None = None
    log: Any = None
    claimed: bool = False  # this worker holds the journal row
    writing: bool = False  # the write may have gone out
    # A write op's synced "writing" mark, asked as soon as the request is claimed, so
    # that its fsync runs while the request is opened, the user looked up and the
    # permit asked; kept once the permit is answered, else undone before the answer.
    marked: Future[None] | None = None
    keep_mark: bool = False


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
        backlog: DirectoryBacklog | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._backlog = backlog if backlog is not None else DirectoryBacklog(0)
        self._verifier = verifier
        self._journal = journal
        self._connectors = connectors
        self._router = DirectoryRouter(settings.directories)
        self._log = log
        self._clock = clock
        self._sleep = sleep
        self._answers = Answers(
            identity=identity, keys=keys, journal=journal, metrics=metrics, clock=clock
        )

    # ------------------------------------------------------------------ entry point

    def handle(
        self,
        raw: bytes,
        *,
        request_id_hint: str | None = None,
        permits: PermitGate | None = None,
    ) -> bytes | Deferred:
        """Signed result bytes, or what to do with the lease when there is no answer
        to post. Never raises: an unexpected exception becomes a signed answer."""
        run = Run(int(self._clock()), time.monotonic(), self._log)
        state = _State()
        self._backlog.routed(None)  # until this request is routed to a directory
        try:
            return self._handle(raw, request_id_hint, permits, run, state)
        except LeaseLost:
            self._forget(state)
            (state.log or self._log).warning("request.lease_lost")
            return Deferred.DROP
        except GiveBack as exc:
            self._forget(state)
            (state.log or self._log).warning("request.given_back", detail=str(exc))
            return Deferred.RELEASE
        except Exception as exc:  # noqa: BLE001  # the promise: every request gets an answer
            return self._crashed(exc, state, run)
        finally:
            self._connectors.release()  # lent by the look-ahead, on every way out

    def _handle(
        self,
        raw: bytes,
        hint: str | None,
        permits: PermitGate | None,
        run: Run,
        state: _State,
    ) -> bytes | Deferred:
        try:
            verified = self._verifier.verify(raw)
        except Rejected as exc:
            return self._answers.rejected(exc, raw, hint, run)

        header = verified.header
        state.header, state.request_hash = header, verified.request_hash
        log = state.log = self._log.bind(request_id=header.id, op=header.op, user=header.user.value)
        run = Run(run.received_at, run.started, log)
        self._look_ahead(header)
        claim = self._journal.claim(header.id, op=header.op, user_ref=header.user.value)
        if claim.kind is ClaimKind.DONE:
            log.info("request.replayed", status="answered_before")
            if claim.result is not None:
                return claim.result
        if claim.kind is ClaimKind.BUSY:
            log.info("request.duplicate_in_flight")
            return Deferred.DROP
        if claim.kind is ClaimKind.IN_DOUBT:
            outcome = Outcome(
                Status.IN_DOUBT,
                "interrupted",
                "the agent stopped during this write; it may or may not have been applied",
            )
            return self._finish(header, verified.request_hash, outcome, run)
        state.claimed = True
        if permits is not None and header.op in _WRITE_OPS:
            state.marked = self._journal.mark_writing_soon(header.id, lease_id=permits.lease_id)
        try:
            log.debug("request.received")  # the audit line at the end is the info line
            try:
                secrets = verified.open()
            except Rejected as exc:
                outcome = Outcome(Status.REJECTED, exc.reason.value, exc.detail)
            else:
                try:
                    outcome = self._run(header, secrets, permits, state)
                finally:
                    del secrets  # the only reference to the passwords
                    self._connectors.release()  # the next request takes the warm connection
        finally:
            if state.marked is not None and not state.keep_mark:
                self._unmark(state.marked, header.id)  # no permit answered: nothing written
        return self._finish(header, verified.request_hash, outcome, run)

    # ------------------------------------------------------------------ the work

    def _look_ahead(self, header: RequestHeader) -> None:
        """Send the user's lookup now (`DirectoryConnector.look_ahead`): the directory
        answers it while the request is claimed and decrypted, and `_run`'s find_user
        reads the answer. Only a read, of what the verified header names; a request
        that goes no further (a replay, a secret part that does not open) leaves the
        answer to be dropped by the connector's next use."""
        with contextlib.suppress(Exception):  # best effort: _run routes and looks up anyway
            route = self._router.route(LookupKind(header.user.kind), header.user.value)
            if route is not None:
                self._connectors.get(route.directory).look_ahead(route.query)

    def _run(
        self,
        header: RequestHeader,
        secrets: SecretPart,
        permits: PermitGate | None,
        state: _State,
    ) -> Outcome:
        deadline = min(float(header.exp), time.time() + self._settings.directory_deadline_seconds)
        found: DirectoryUser | None = None
        directory: DirectoryConfig | None = None
        connector: DirectoryConnector | None = None
        try:
            route = self._router.route(LookupKind(header.user.kind), header.user.value)
            if route is None:
                return Outcome(
                    Status.NOT_MANAGED,
                    NotManagedReason.NO_DIRECTORY,
                    "no configured directory serves this user",
                )
            directory = route.directory
            self._backlog.routed(directory.name)
            connector = self._connectors.get(directory)
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
            marked = state.marked  # a write op under a permit: marked at its claim
            if permits is not None and marked is not None:
                query, asking = route.query, permits
                user, permit = self._marked_meanwhile(
                    marked,
                    lambda: ask_to_write(
                        asking,
                        header,
                        user,
                        directory.name,
                        deadline,
                        reread=lambda: self._retry(lambda: connector.find_user(query), deadline),
                    ),
                )
                state.keep_mark = True  # the permit answered: the mark stays
                found = user
                if isinstance(permit, Outcome):
                    return permit  # journaled as done by _finish
                # Writes (and their retries) stop before the relay could hand the lease on.
                deadline = min(deadline, permit - _PERMIT_MARGIN)
                # Sent only where the marker was read, and only while the permit runs.
                user = replace(user, write_by=deadline)
            else:
                self._journal.mark_writing(header.id)
            state.writing = True
            state.log.debug("request.writing")  # bench/trace_one.py times the write from here
            return self._write(header, secrets, connector, user, deadline, directory=directory.name)
        except (LeaseLost, GiveBack):
            raise
        except PolicyViolation as exc:
            # The portal shows the requirements next to the refusal; a refusal from
            # the directory itself (history) carries no policy, so read it.
            described = (
                exc.policy.describe()
                if exc.policy
                else self._describe_policy(connector, found)
                if connector is not None
                else None
            )
            name = directory.name if directory else None
            return Outcome(exc.status, exc.reason, exc.detail, exc.dc, described, name)
        except DirectoryUnavailable as exc:
            name = directory.name if directory else None
            if state.writing and exc.write_sent is not False:  # sent, answer lost
                return Outcome(
                    Status.IN_DOUBT, "directory_fault", exc.detail, exc.dc, directory=name
                )
            return Outcome(exc.status, None, exc.detail, exc.dc, directory=name)
        except DirectoryError as exc:
            name = directory.name if directory else None
            return Outcome(exc.status, exc.reason, exc.detail, exc.dc, directory=name)
        except Exception as exc:  # noqa: BLE001  # answered, never lost (issue 8 item 3)
            (state.log or self._log).exception("request.crashed")
            name = directory.name if directory else None
            status = Status.IN_DOUBT if state.writing else Status.INTERNAL_ERROR
            return Outcome(status, "internal_error", type(exc).__name__, directory=name)

    def _write(
        self,
        header: RequestHeader,
        secrets: SecretPart,
        connector: DirectoryConnector,
        user: DirectoryUser,
        deadline: float,
        *,
        directory: str,
    ) -> Outcome:
        """The write, counted in the directory's backlog (agent/backlog.py)."""
        started = self._backlog.write_started(directory)
        try:
            outcome = self._write_op(header, secrets, connector, user, deadline)
        finally:
            self._backlog.write_ended(started)
        outcome.directory = directory
        return outcome

    def _write_op(
        self,
        header: RequestHeader,
        secrets: SecretPart,
        connector: DirectoryConnector,
        user: DirectoryUser,
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
        user: DirectoryUser,
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
        connector: DirectoryConnector, user: DirectoryUser | None
    ) -> dict[str, Any] | None:
        if user is None:
            return None
        try:
            return connector.password_policy(user).describe()
        except DirectoryError:
            return None  # the refusal itself is what matters; the policy is a courtesy

    def _retry(self, call: Callable[[], T], deadline: float) -> T:
        return retry_reads(call, deadline, self._sleep)

    def _retry_unsent(self, call: Callable[[], T], deadline: float) -> T:
        return retry_unsent(call, deadline, self._sleep)

    # ------------------------------------------------------------------ results

    def _finish(
        self, header: RequestHeader, request_hash: str, outcome: Outcome, run: Run
    ) -> bytes:
        return self._answers.finish(header, request_hash, outcome, run)

    def _marked_meanwhile(self, marked: Future[None], ask: Callable[[], T]) -> T:
        """`ask` (the relay's write permit, agent/fence.py) while the one synced journal
        write, asked at the claim (`_handle`), is made (the lease in it lets a restart
        post the answer); both are done when this returns, so the write may go out.
        If either raises, `_handle` undoes the mark."""
        answer = ask()
        marked.result()  # durable before the write goes out (or the answer)
        return answer

    def _unmark(self, marked: Future[None], request_id: str) -> None:
        """No write will follow the mark: once it is done, undo it, so the claim can be
        forgotten and a redelivery is handled normally."""
        with contextlib.suppress(Exception):
            marked.result()
            self._journal.unmark_writing(request_id)

    def _forget(self, state: _State) -> None:
        """Drop this worker's journal claim when nothing was written, so a redelivery is
        handled normally (a write that may have gone out stays 'writing')."""
        if state.header is not None and state.claimed and not state.writing:
            with contextlib.suppress(Exception):
                self._journal.forget(state.header.id)

    def _crashed(self, exc: Exception, state: _State, run: Run) -> bytes | Deferred:
        """An exception outside the directory work (journal, decryption, signing)."""
        log = state.log or self._log
        log.exception("request.crashed", error=type(exc).__name__)
        if state.header is None or state.request_hash is None:
            return Deferred.DROP  # nothing verified to answer to; the lease runs out
        status = Status.IN_DOUBT if state.writing else Status.INTERNAL_ERROR
        outcome = Outcome(status, "internal_error", type(exc).__name__)
        try:
            return self._finish(
                state.header, state.request_hash, outcome, Run(run.received_at, run.started, log)
            )
        except Exception:  # cannot even sign: let the lease run out
            log.exception("request.unanswerable")
            self._forget(state)
            return Deferred.DROP
