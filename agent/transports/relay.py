"""`RelayTransport`: the agent's HTTPS long-poll client of the relay (cloud/relay).

Every call is signed with the agent's enrolled Ed25519 key (no bearer secret to
steal from the agent's disk or the relay's database)::

    Authorization: WBA1 agent=<agent_id>, ts=<unix>, nonce=<random>, sig=<b64url>
    sig = Ed25519(b"writeback-relay-auth/v2\\n" + METHOD + b"\\n" + path_with_query
                  + b"\\n" + ts + b"\\n" + nonce + b"\\n" + sha256_hex(body))

`auth_message` is the one definition of those bytes; the relay imports it to verify.

HTTP is `http.client` on keep-alive connections (wire/http_connection.py:
no redirects, nothing re-sent after a fault, TLS verified by default).

Errors are translated once, in `_map_errors` and `_check`, to the classes of
`agent.transports.base` (connect errors, timeouts, 5xx and 429 -> TransportUnavailable;
409 -> LeaseLost; 401/403 -> AuthenticationFailed). The signing key is held in a
private attribute and never appears in a repr, log line or exception.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.transports.base import (
    AuthenticationFailed,
    EnrollmentFailed,
    Lease,
    LeaseLost,
    Permit,
    TransportError,
    TransportUnavailable,
)
from wire.http_connection import FAULTS, Answer, Connections, tls_context
from wire.permits import PermitDecision
from wire.signed_call import auth_message, authorization_value, new_nonce

# Long-polls may take this much longer than their wait before we call it a timeout.
_LONG_POLL_MARGIN = 10.0


def authorization_header(
    key: Ed25519PrivateKey,
    agent_id: str,
    method: str,
    path_with_query: bytes,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    ts = str(int(time.time() if now is None else now))
    nonce = nonce or new_nonce()
    sig = key.sign(auth_message(method, path_with_query, ts, nonce, body))
    return authorization_value(agent_id, ts, nonce, sig)


def _check_url(base_url: str, allow_insecure_http: bool) -> None:
    """https always; http only to loopback (tests, a local relay) or when asked for."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return
    if parts.scheme != "http":
        raise ValueError(f"relay URL must be https:// (got {base_url!r})")
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not (loopback or allow_insecure_http):
        raise ValueError(
            f"refusing plain http:// to {host!r}: use https://, or allow_insecure_http=True"
        )


_USER_AGENT = {"User-Agent": "writeback-agent"}
_JSON = {"Content-Type": "application/json"}


@contextmanager
def _map_errors() -> Iterator[None]:
    """Socket, TLS and HTTP protocol faults -> TransportUnavailable (the caller retries
    with backoff)."""
    try:
        yield
    except TimeoutError as exc:
        raise TransportUnavailable(f"relay timed out: {type(exc).__name__}") from exc
    except FAULTS as exc:
        raise TransportUnavailable(f"relay unreachable: {type(exc).__name__}: {exc}") from exc


def _json(response: Answer) -> Any:
    """The answer's JSON body; a body that is not JSON is a TransportError (not retried)."""
    try:
        return json.loads(response.body)
    except ValueError as exc:
        raise TransportError(
            f"unexpected answer from the relay (HTTP {response.status}, not JSON)",
            status=response.status,
        ) from exc


def _error_code(response: Answer) -> tuple[str | None, str]:
    try:
        body = json.loads(response.body)
    except ValueError:
        return None, response.body[:200].decode("utf-8", "replace")
    if not isinstance(body, dict):
        return None, ""
    code = body.get("error") or body.get("status")
    return (str(code) if code else None), str(body.get("message", ""))


def _check(response: Answer, what: str) -> None:
    """Raise the most specific TransportError for a non-2xx answer."""
    status = response.status
    if status < 300:
        return
    code, message = _error_code(response)
    text = f"{what}: relay answered {status} {code or ''} {message}".rstrip()
    if status < 400:
        location = response.headers.get("Location", "")
        raise TransportError(
            f"{text} (redirect to {location[:200]!r} not followed: is the relay URL right?)",
            code=code,
            status=status,
        )
    if status >= 500 or status == 429:
        raise TransportUnavailable(text, code=code, status=status)
    if status == 409:
        raise LeaseLost(text, code=code, status=status)
    if status in (401, 403):
        raise AuthenticationFailed(
            text + " (is the agent enrolled, not removed, and its clock right?)",
            code=code,
            status=status,
        )
    raise TransportError(text, code=code, status=status)


def _lease_from(data: dict[str, Any]) -> Lease:
    envelope = data["envelope"]
    raw = envelope.encode("utf-8") if isinstance(envelope, str) else json.dumps(envelope).encode()
    return Lease(
        lease_id=data["lease_id"],
        request_id=data["request_id"],
        envelope=raw,
        expires_at=float(data["lease_expires_at"]),
    )


class RelayTransport:
    """`Transport` over the relay's HTTP API (keep-alive `http.client` connections)."""

    def __init__(
        self,
        base_url: str,
        agent_id: str,
        signing_key: Ed25519PrivateKey,
        *,
        ca_file: str | None = None,
        verify: bool = True,
        timeout: float = 10.0,
        allow_insecure_http: bool = False,
    ) -> None:
        _check_url(base_url, allow_insecure_http)
        self._base_url = base_url.rstrip("/")
        self._agent_id = agent_id
        self.__key = signing_key
        self._timeout = timeout
        self._http = Connections(
            self._base_url, context=tls_context(ca_file, verify), headers=_USER_AGENT
        )

    def __repr__(self) -> str:
        return f"RelayTransport(base_url={self._base_url!r}, agent_id={self._agent_id!r})"

    @property
    def agent_id(self) -> str:
        return self._agent_id

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        target = self._http.target(path, params)
        headers = {
            "Authorization": authorization_header(
                self.__key, self._agent_id, method, target.encode("ascii"), body
            )
        }
        if body:
            headers.update(_JSON)
        with _map_errors():
            response = self._http.request(
                method,
                target,
                body=body,
                headers=headers,
                timeout=timeout if timeout is not None else self._timeout,
            )
        _check(response, f"{method} {path}")
        return response

    def lease(self, wait: float) -> Lease | None:
        wait = max(0.0, wait)
        response = self._call(
            "POST",
            "/v1/agent/lease",
            params={"wait": f"{wait:g}"},
            timeout=wait + _LONG_POLL_MARGIN + self._timeout,
        )
        if response.status == 204:
            return None
        return _lease_from(_json(response))

    def lease_many(self, wait: float, most: int) -> list[Lease]:
        """Batch leasing: wait up to `wait` s for the first request, take up to `most`."""
        wait = max(0.0, wait)
        response = self._call(
            "POST",
            "/v1/agent/leases",
            params={"wait": f"{wait:g}", "max": str(max(1, most))},
            timeout=wait + _LONG_POLL_MARGIN + self._timeout,
        )
        if response.status == 204:
            return []
        return [_lease_from(item) for item in _json(response)["leases"]]

    def complete_many(self, results: Sequence[tuple[Lease, bytes]]) -> list[str]:
        """Post several results in one call; one outcome per result, in order:
        "stored", "lease_lost" or the relay's refusal code (e.g. "too_large")."""
        body = json.dumps(
            {
                "results": [
                    {
                        "lease_id": lease.lease_id,
                        "request_id": lease.request_id,
                        "result": result.decode("utf-8"),
                    }
                    for lease, result in results
                ]
            }
        ).encode()
        data = _json(self._call("POST", "/v1/agent/results/batch", body=body))
        try:
            outcomes = [(str(o["request_id"]), str(o["outcome"])) for o in data["outcomes"]]
        except (KeyError, TypeError) as exc:
            raise TransportError(f"results: unexpected answer from the relay: {exc}") from exc
        if [rid for rid, _ in outcomes] != [lease.request_id for lease, _ in results]:
            raise TransportError("results: the relay's outcomes do not match the results sent")
        return [outcome for _, outcome in outcomes]

    def renew(self, lease: Lease) -> Lease:
        response = self._call("POST", f"/v1/agent/leases/{lease.lease_id}/renew")
        return replace(lease, expires_at=float(_json(response)["lease_expires_at"]))

    def permit(
        self, lease: Lease, user_key: str, *, ordered: bool, marker: str | None = None
    ) -> Permit:
        ask: dict[str, Any] = {"user_key": user_key, "ordered": ordered}
        if marker is not None:
            ask["marker"] = marker
        body = json.dumps(ask).encode()
        data = _json(self._call("POST", f"/v1/agent/leases/{lease.lease_id}/permit", body=body))
        try:
            decision = PermitDecision(data["decision"])
            renewed = replace(lease, expires_at=float(data["lease_expires_at"]))
            valid_for = float(data["lease_seconds"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TransportError(f"permit: unexpected answer from the relay: {exc}") from exc
        return Permit(decision, renewed, valid_for)

    def permit_many(
        self, asks: Sequence[tuple[Lease, str, bool, str | None]]
    ) -> list[Permit | None]:
        """Several permits (lease, user_key, ordered, marker) in one call, each decided
        as by `permit`; one answer per ask, in order, None where the lease is lost."""
        items: list[dict[str, Any]] = []
        for lease, key, ordered, marker in asks:
            item: dict[str, Any] = {"lease_id": lease.lease_id, "user_key": key, "ordered": ordered}
            if marker is not None:
                item["marker"] = marker
            items.append(item)
        body = json.dumps({"permits": items}).encode()
        data = _json(self._call("POST", "/v1/agent/permits", body=body))
        answers: list[Permit | None] = []
        try:
            got = data["answers"]
            if [str(a["lease_id"]) for a in got] != [ask[0].lease_id for ask in asks]:
                raise ValueError("the answers do not match the permits asked")
            for (lease, *_), item in zip(asks, got, strict=True):
                if item.get("error") == "lease_lost":
                    answers.append(None)
                    continue
                answers.append(
                    Permit(
                        PermitDecision(item["decision"]),
                        replace(lease, expires_at=float(item["lease_expires_at"])),
                        float(item["lease_seconds"]),
                    )
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise TransportError(f"permits: unexpected answer from the relay: {exc}") from exc
        return answers

    def release(self, lease: Lease) -> None:
        self._call("POST", f"/v1/agent/leases/{lease.lease_id}/release")

    def complete(self, lease: Lease, result: bytes) -> None:
        # The result travels as a JSON string so the portal gets these exact bytes back.
        body = json.dumps(
            {
                "lease_id": lease.lease_id,
                "request_id": lease.request_id,
                "result": result.decode("utf-8"),
            }
        ).encode()
        self._call("POST", "/v1/agent/results", body=body)

    def heartbeat(self, payload: bytes) -> None:
        self._call("POST", "/v1/agent/heartbeat", body=payload or b"{}")

    def portal_keys(self) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = _json(self._call("GET", "/v1/agent/portal-keys"))["keys"]
        return keys

    def update_keys(self, public_keys: dict[str, Any]) -> None:
        """Register a rotated public record (same signing key, new encryption key)."""
        self._call("PUT", "/v1/agent/keys", body=json.dumps({"public_keys": public_keys}).encode())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RelayTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def enroll(
    base_url: str,
    code: str,
    name: str,
    public_keys: dict[str, Any],
    *,
    ca_file: str | None = None,
    verify: bool = True,
    timeout: float = 10.0,
    allow_insecure_http: bool = False,
) -> dict[str, Any]:
    """Redeem a one-time enrollment code: register this agent's public keys.

    Returns {agent_id, tenant, agent_group, portal_keys}. `public_keys` must hold
    "sign_key" (base64url raw Ed25519 public key); the rest is stored opaquely and
    handed to the portal. Raises EnrollmentFailed (code refused) or the usual
    TransportError subclasses. The code is never put into an exception message.
    """
    _check_url(base_url, allow_insecure_http)
    connections = Connections(
        base_url.rstrip("/"), context=tls_context(ca_file, verify), headers=_USER_AGENT
    )
    body = json.dumps({"code": code, "name": name, "public_keys": public_keys}).encode()
    try:
        with _map_errors():
            response = connections.request(
                "POST",
                connections.target("/v1/agents/enroll"),
                body=body,
                headers=_JSON,
                timeout=timeout,
            )
    finally:
        connections.close()
    if response.status in (400, 403, 422):
        err, message = _error_code(response)
        raise EnrollmentFailed(
            f"enrollment refused ({err or response.status}): {message}".rstrip(": "),
            code=err,
            status=response.status,
        )
    _check(response, "enroll")
    result: dict[str, Any] = _json(response)
    return result
