"""`PortalClient`: what a portal (or the SDK, or a test) uses to talk to the relay.

Envelopes and results are opaque bytes here too: building and verifying them is
cloud/sdk.py's job. Each refusal has its own exception so the portal can show the
right page (NoAgentOnline -> "try again later" at once).

Exception tree::

    RelayError                    anything else (status and error code attached)
     +-- RelayUnavailable         network fault, timeout, 5xx
     |    +-- RateLimited         429: over the tenant's rate; `retry_after` seconds
     |    +-- RequestMaybeQueued  submit_and_wait lost the relay once its request was
     |                            or may have been queued (treat as in_doubt)
     +-- NoAgentOnline            503 no_agent_online: nothing was queued
     +-- DuplicateRequest         409: this request id was submitted before
     +-- EnvelopeTooLarge         413
     +-- InvalidEnvelope          400/422: not JSON, out of bounds, malformed, or already
     |                            expired (`code` says which)
     +-- Forbidden                401/403: bad token, or header.tenant is another tenant
     +-- UnknownRequest           404 (never submitted, pruned, or another tenant's)
     +-- RequestExpired           410: expired before any agent answered (never written)
     +-- RequestInDoubt           410: expired after a write was permitted, unanswered
     +-- ResultTimeout            wait_result gave up while it was still queued/leased

Waiting for many: `poll_results` / `wait_results` long-poll for several requests in one
call (POST /v1/requests/results:wait); `cloud.relay.waiter.ResultWaiter` shares those
calls between the threads of a portal, each waiting for its own request.

HTTP is `http.client` on keep-alive connections (wire/http_connection.py: TLS verified
by default, no redirects, nothing re-sent after a fault), shared by the portal's threads.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from cloud.relay.models import ID_PATTERN
from wire.http_connection import FAULTS, Answer, Connections, tls_context

_MAX_WAIT = 60.0
MAX_IDS = 100  # per results:wait call (the relay's limit)
PENDING = frozenset({"queued", "leased"})
# Faults of the connect that carry nothing of the call: the request was not sent.
_NOT_SENT = (ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError)
_ID = re.compile(ID_PATTERN)  # a request id the relay accepts


class RelayError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class RelayUnavailable(RelayError): ...


class RateLimited(RelayUnavailable):
    def __init__(self, message: str, *, code: str | None, retry_after: float) -> None:
        super().__init__(message, status=429, code=code)
        self.retry_after = retry_after


class RequestMaybeQueued(RelayUnavailable):
    """`submit_and_wait` lost touch with the relay after its request was (or may have
    been) queued: a write may still happen. Tell the user as for in_doubt."""


class NoAgentOnline(RelayError): ...


class DuplicateRequest(RelayError): ...


class EnvelopeTooLarge(RelayError): ...


class InvalidEnvelope(RelayError): ...


class Forbidden(RelayError): ...


class UnknownRequest(RelayError): ...


class RequestExpired(RelayError): ...


class RequestInDoubt(RelayError):
    """An agent was permitted to write this request and never answered: the password
    may or may not have changed. Tell the user as for status in_doubt."""


class ResultTimeout(RelayError):
    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message, status=202, code="timeout")
        self.state = state  # "queued" (no agent took it) or "leased" (an agent is on it)


@dataclass(frozen=True)
class ResultState:
    """One request as a results:wait call saw it: state done (with `result`), queued or
    leased (still pending), expired, in_doubt or unknown."""

    id: str
    state: str
    result: bytes | None = None

    @property
    def settled(self) -> bool:
        return self.state not in PENDING

    def value(self) -> bytes:
        """The result bytes, or the exception `wait_result` raises for this state."""
        if self.result is not None:
            return self.result
        text = f"result {self.id}: {self.state}"
        if self.state == "expired":
            raise RequestExpired(text, status=410, code="expired")
        if self.state == "in_doubt":
            raise RequestInDoubt(text, status=410, code="in_doubt")
        if self.state == "unknown":
            raise UnknownRequest(text, status=404, code="unknown_request")
        raise ResultTimeout(f"no result for {self.id} yet (state {self.state})", state=self.state)


@dataclass(frozen=True)
class SubmitAnswer:
    """One envelope of a `submit_many` call: queued as `id`, or refused with `error`."""

    id: str | None
    error: RelayError | None = None

    def value(self) -> str:
        """The request id, or raises what `submit` would have raised."""
        if self.error is not None:
            raise self.error
        assert self.id is not None  # noqa: S101  # no error means an id
        return self.id


_BY_STATUS: dict[int, type[RelayError]] = {
    400: InvalidEnvelope,
    401: Forbidden,
    403: Forbidden,
    404: UnknownRequest,
    409: DuplicateRequest,
    410: RequestExpired,
    413: EnvelopeTooLarge,
    422: InvalidEnvelope,
    503: NoAgentOnline,
}


def nothing_queued(exc: BaseException) -> bool:
    """Whether an exception from `submit_and_wait` means the relay queued nothing (a
    refusal, or no connection), so no password can change because of that call."""
    refusals = (NoAgentOnline, InvalidEnvelope, EnvelopeTooLarge, DuplicateRequest, Forbidden)
    return isinstance(exc, (*refusals, RelayUnavailable)) and not isinstance(
        exc, RequestMaybeQueued
    )


def raise_once_queued(exc: RelayError, request_id: str, *, surely: bool = True) -> NoReturn:
    """Raise an error met while waiting for a request that was (`surely`) or may have
    been queued as what it stands for: never one that `nothing_queued` takes for a
    refusal (a token revoked during the wait is no proof that nothing will be
    written), so those become RequestMaybeQueued; the others (expired, in doubt,
    timed out) are raised as they are."""
    if not nothing_queued(exc):
        raise exc
    raise RequestMaybeQueued(
        f"submit: no result for request {request_id}, which "
        f"{'was' if surely else 'may have been'} queued: {exc}"
    ) from exc


def _envelope_id(envelope: bytes) -> str | None:
    """The request id of an envelope the relay may have queued (for the lookup after a
    lost answer); None when it has none the relay accepts: such an envelope is refused,
    never queued."""
    try:
        request_id = json.loads(envelope)["header"]["id"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(request_id, str) and _ID.fullmatch(request_id):
        return request_id
    return None


def _json(response: Answer, what: str) -> Any:
    try:
        return json.loads(response.body)
    except ValueError as exc:
        raise RelayError(
            f"{what}: unexpected answer from the relay (HTTP {response.status}, not JSON)",
            status=response.status,
        ) from exc


def _raise_for(response: Answer, what: str) -> None:
    status = response.status
    if status < 300:
        return
    try:
        body = json.loads(response.body)
    except ValueError:
        body = {}
    code = body.get("error") if isinstance(body, dict) else None
    message = body.get("message", "") if isinstance(body, dict) else ""
    if status < 400:
        location = response.headers.get("Location", "")
        message = f"{message} (redirect to {location[:200]!r} not followed)".lstrip()
    raise _error(what, status, code, message, response.headers.get("Retry-After"))


def _error(
    what: str, status: int, code: str | None, message: str, retry_after: str | None = None
) -> RelayError:
    """The exception for a refusal (of a call, or of one item of a batch call)."""
    text = f"{what}: relay answered {status} {code or ''} {message}".rstrip()
    if status == 410 and code == "in_doubt":
        return RequestInDoubt(text, status=status, code=code)
    if status == 429:
        try:
            seconds = float(retry_after or "1")
        except ValueError:
            seconds = 1.0
        return RateLimited(text, code=code, retry_after=seconds)
    if status == 503 and code == "no_agent_online":
        return NoAgentOnline(text, status=status, code=code)
    if status >= 500:
        return RelayUnavailable(text, status=status, code=code)
    return _BY_STATUS.get(status, RelayError)(text, status=status, code=code)


class PortalClient:
    """Sync client of the relay's portal API, authenticated by the tenant API token.
    Thread-safe: the portal's threads share it (and its keep-alive connections)."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self.__authorization = {"Authorization": f"Bearer {api_token}"}
        self._http = Connections(
            self._base_url,
            context=tls_context(verify if isinstance(verify, str) else None, verify is not False),
            headers={"User-Agent": "writeback-portal"},
            max_idle=16,
        )

    def __repr__(self) -> str:
        return f"PortalClient(base_url={self._base_url!r})"  # never the token

    def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> Answer:
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self.__authorization)
        if content is not None:
            headers["Content-Type"] = "application/json"
        target = self._http.target(path, params)
        try:
            response = self._http.request(
                method,
                target,
                body=content or b"",
                headers=headers,
                timeout=self._timeout if timeout is None else timeout,
            )
        except FAULTS as exc:
            raise RelayUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        _raise_for(response, what)
        return response

    def agents(self, group: str) -> list[dict[str, Any]]:
        """[{agent_id, name, public_keys, online, last_seen, enrolled_at}] of the group."""
        agents: list[dict[str, Any]] = _json(
            self._send("GET", f"/v1/groups/{group}/agents", "list agents"), "list agents"
        )["agents"]
        return agents

    def submit(self, envelope: bytes) -> str:
        """Queue a request envelope; returns its id. NoAgentOnline means nothing was queued."""
        response = self._send(
            "POST",
            "/v1/requests",
            "submit",
            content=envelope,
        )
        return str(_json(response, "submit")["id"])

    def submit_and_wait(self, envelope: bytes, timeout: float = 60.0) -> bytes:
        """`submit` then `wait_result`, in one HTTP call when the result comes within
        the relay's longest wait (60 s): the result envelope bytes. Raises what
        `submit` raises when nothing was queued (NoAgentOnline, InvalidEnvelope,
        RateLimited, RelayUnavailable, ...), and once the request was or may have been
        queued: RequestExpired, RequestInDoubt, ResultTimeout, or RequestMaybeQueued
        when the relay could not be heard (its password may still change).

        A fault or a 5xx once the envelope may have gone out is not taken for a
        refusal: the request is looked up by its id, and waited for if it is there."""
        deadline = time.monotonic() + timeout
        wait = max(0.0, min(timeout, _MAX_WAIT))
        try:
            response = self._send(
                "POST",
                "/v1/requests",
                "submit",
                params={"wait": f"{wait:g}"},
                content=envelope,
                timeout=self._timeout + wait,
            )
        except RateLimited:
            raise  # refused before anything was queued
        except RelayUnavailable as exc:
            request_id = _envelope_id(envelope)
            if request_id is None:
                raise  # an envelope without a valid id is refused, never queued
            return self.wait_submitted(request_id, deadline - time.monotonic(), lost=exc)
        if response.status == 200:
            return response.body
        answer = _json(response, "submit")  # 202: queued, still pending at the end
        request_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(request_id, str):
            raise RelayError(
                f"submit: unexpected answer from the relay (HTTP {response.status}, no id)",
                status=response.status,
            )
        state = str(answer.get("state", "queued"))
        if deadline - time.monotonic() <= 0:
            raise ResultTimeout(
                f"no result for {request_id} after {timeout:.0f}s (state {state})", state=state
            )
        return self.wait_submitted(request_id, deadline - time.monotonic())

    def wait_submitted(
        self, request_id: str, timeout: float = 60.0, *, lost: RelayUnavailable | None = None
    ) -> bytes:
        """`wait_result` for a request that was queued, or whose submit got no answer
        (`lost`, what the submit raised): raised again when the request was not sent
        or is unknown to the relay (never queued), RequestMaybeQueued when the relay
        cannot be heard."""
        if lost is not None and isinstance(lost.__cause__, _NOT_SENT):
            raise lost  # no connection to send it on: nothing was queued
        try:
            return self.wait_result(request_id, timeout=max(0.0, timeout))
        except UnknownRequest:
            if lost is None:
                raise
            raise lost from None  # never queued: as a failed submit
        except RelayError as exc:
            raise_once_queued(exc, request_id, surely=lost is None)

    def submit_many(self, envelopes: Sequence[bytes]) -> list[SubmitAnswer]:
        """Queue up to 16 envelopes in one call, each as `submit` would: one answer per
        envelope, in order (`.value()`: its id, or raises what `submit` would have
        raised for it). Raises for the call as a whole."""
        response = self._send(
            "POST",
            "/v1/requests:batch",
            "submit",
            body={"envelopes": [envelope.decode("utf-8") for envelope in envelopes]},
        )
        outcomes: list[SubmitAnswer] = []
        try:
            for item in _json(response, "submit")["outcomes"]:
                if item.get("id") is not None and item.get("error") is None:
                    outcomes.append(SubmitAnswer(str(item["id"])))
                else:
                    status = int(item.get("status") or 500)
                    refused = _error("submit", status, item.get("error"), item.get("message", ""))
                    outcomes.append(SubmitAnswer(None, refused))
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayError(f"submit: unexpected answer from the relay: {exc}") from exc
        if len(outcomes) != len(envelopes):
            raise RelayError("submit: the relay answered another number of outcomes")
        return outcomes

    def poll_result(self, request_id: str, wait: float = 0.0) -> tuple[str, bytes | None]:
        """One long-poll: ("done", result bytes) or (state, None) with state queued/leased."""
        wait = max(0.0, min(wait, _MAX_WAIT))
        response = self._send(
            "GET",
            f"/v1/requests/{request_id}/result",
            "result",
            params={"wait": f"{wait:g}"},
            timeout=self._timeout + wait,
        )
        if response.status == 200:
            return "done", response.body
        return str(_json(response, "result").get("state", "queued")), None

    def wait_result(self, request_id: str, timeout: float = 60.0) -> bytes:
        """The result envelope bytes, long-polling until it arrives; RequestExpired if
        no agent answered in time, ResultTimeout if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            state, result = self.poll_result(request_id, wait=max(0.0, remaining))
            if result is not None:
                return result
            if deadline - time.monotonic() <= 0:
                raise ResultTimeout(
                    f"no result for {request_id} after {timeout:.0f}s (state {state})", state=state
                )

    def poll_results(self, ids: Sequence[str], wait: float = 0.0) -> list[ResultState]:
        """One long-poll for up to MAX_IDS requests: answered as soon as at least one
        is settled (done, expired, in_doubt, unknown) or after `wait`; every id's state."""
        if not 0 < len(ids) <= MAX_IDS:
            raise ValueError(f"poll_results takes 1 to {MAX_IDS} ids, not {len(ids)}")
        wait = max(0.0, min(wait, _MAX_WAIT))
        response = self._send(
            "POST",
            "/v1/requests/results:wait",
            "results",
            params={"wait": f"{wait:g}"},
            body={"ids": list(ids)},
            timeout=self._timeout + wait,
        )
        try:
            return [
                ResultState(
                    str(item["id"]),
                    str(item["state"]),
                    None if item.get("result") is None else str(item["result"]).encode("utf-8"),
                )
                for item in _json(response, "results")["requests"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayError(f"results: unexpected answer from the relay: {exc}") from exc

    def wait_results(self, ids: Sequence[str], timeout: float = 60.0) -> dict[str, ResultState]:
        """Long-poll until every one of up to MAX_IDS requests is settled or `timeout`
        passes; each id's last state (`.value()` gives its result bytes or raises as
        `wait_result` would: RequestExpired, RequestInDoubt, ResultTimeout, ...)."""
        deadline = time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        states: dict[str, ResultState] = {}
        while True:
            for state in self.poll_results(pending, wait=deadline - time.monotonic()):
                states[state.id] = state
            pending = [i for i in pending if not states.get(i, ResultState(i, "queued")).settled]
            if not pending or time.monotonic() >= deadline:
                return states

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
