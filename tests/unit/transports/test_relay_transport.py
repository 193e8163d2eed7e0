"""RelayTransport without a relay: signing, error mapping, URL and TLS rules
(httpx.MockTransport stands in for the server; the real one is in
tests/integration/relay)."""

from __future__ import annotations

import base64
import json
import logging

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from agent.transports.base import (
    AuthenticationFailed,
    EnrollmentFailed,
    Lease,
    LeaseLost,
    TransportError,
    TransportUnavailable,
)
from agent.transports.relay import RelayTransport, enroll
from cloud.relay.auth import parse_agent_authorization
from wire.canonical import b64url_decode
from wire.canonical import b64url_encode as b64url
from wire.signed_call import auth_message

KEY = Ed25519PrivateKey.generate()
LEASE = Lease("lse_1", "req-1", b"{}", 0.0)


def _transport(handler: httpx.MockTransport | None = None, **kwargs: object) -> RelayTransport:
    mock = handler or httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    return RelayTransport("http://127.0.0.1:9", "agt_1", KEY, transport=mock, **kwargs)  # type: ignore[arg-type]


def test_every_call_is_signed_over_method_path_ts_and_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/agent/lease":
            return httpx.Response(200, json={"lease_id": "lse_1", "request_id": "r1",
                                             "lease_expires_at": 123.5, "envelope": '{"a": 1}'})
        if request.url.path.endswith("/renew"):
            return httpx.Response(200, json={"lease_id": "lse_1", "lease_expires_at": 200.0})
        if request.url.path == "/v1/agent/portal-keys":
            return httpx.Response(200, json={"keys": [{"kid": "p"}]})
        return httpx.Response(200, json={"ok": True})

    with _transport(httpx.MockTransport(handler)) as transport:
        lease = transport.lease(wait=2.5)
        assert lease == Lease("lse_1", "r1", b'{"a": 1}', 123.5)
        assert transport.renew(lease).expires_at == 200.0
        transport.complete(lease, b'{"status": "succeeded"}')
        transport.heartbeat(b'{"v": 1}')
        transport.release(lease)
        assert transport.portal_keys() == [{"kid": "p"}]

    for request in seen:
        creds = parse_agent_authorization(request.headers["Authorization"])
        assert creds.agent_id == "agt_1"
        message = auth_message(
            request.method, request.url.raw_path, creds.ts, creds.nonce, request.content
        )
        KEY.public_key().verify(creds.signature, message)  # raises if wrong
    assert seen[0].url.raw_path == b"/v1/agent/lease?wait=2.5"
    posted = json.loads(seen[2].content)
    assert posted == {"lease_id": "lse_1", "request_id": "r1", "result": '{"status": "succeeded"}'}


def test_lease_returns_none_on_204() -> None:
    with _transport(httpx.MockTransport(lambda r: httpx.Response(204))) as transport:
        assert transport.lease(wait=0) is None


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransportUnavailable), (502, TransportUnavailable), (503, TransportUnavailable),
     (429, TransportUnavailable), (409, LeaseLost), (401, AuthenticationFailed),
     (403, AuthenticationFailed), (404, TransportError), (422, TransportError)],
)
def test_status_mapping(status: int, error: type[TransportError]) -> None:
    answer = httpx.Response(status, json={"error": "some_code", "message": "why"})
    transport = _transport(httpx.MockTransport(lambda r: answer))
    with transport, pytest.raises(error) as info:
        transport.renew(LEASE)
    assert (info.value.status, info.value.code) == (status, "some_code")
    assert type(info.value) is error or error is TransportError


@pytest.mark.parametrize(
    "fault",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
def test_network_faults_are_unavailable(fault: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault

    with _transport(httpx.MockTransport(handler)) as transport, pytest.raises(
        TransportUnavailable
    ) as info:
        transport.heartbeat(b"{}")
    assert info.value.__cause__ is fault


def test_real_connection_refused_is_unavailable() -> None:
    transport = RelayTransport("http://127.0.0.1:1", "agt_1", KEY, timeout=2)
    with transport, pytest.raises(TransportUnavailable):
        transport.lease(wait=0)


@pytest.mark.parametrize("url", ["http://relay.example.com", "ftp://127.0.0.1", "relay:80"])
def test_plain_http_only_to_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        RelayTransport(url, "agt_1", KEY)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:1",
                                 "https://relay.example.com"])
def test_allowed_urls(url: str) -> None:
    RelayTransport(url, "agt_1", KEY).close()


def test_insecure_http_when_explicitly_allowed() -> None:
    RelayTransport("http://relay.internal", "agt_1", KEY, allow_insecure_http=True).close()


def test_tls_verification_with_a_ca_file_that_does_not_exist() -> None:
    with pytest.raises(FileNotFoundError):
        RelayTransport("https://relay.example.com", "agt_1", KEY, ca_file="/nonexistent/ca.pem")


def test_the_signing_key_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    raw = KEY.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    secret_forms = {raw.hex(), repr(raw)}
    secret_forms |= {base64.b64encode(raw).decode(), b64url(raw)}
    caplog.set_level(logging.DEBUG)
    answer = httpx.Response(401, json={"error": "bad_signature"})
    transport = _transport(httpx.MockTransport(lambda r: answer))
    with pytest.raises(AuthenticationFailed) as info:
        transport.heartbeat(b"{}")
    transport.close()
    texts = [repr(transport), str(transport), str(info.value), repr(info.value), caplog.text,
             repr(vars(transport))]
    for text in texts:
        for secret in secret_forms:
            assert secret not in text
    assert repr(transport) == "RelayTransport(base_url='http://127.0.0.1:9', agent_id='agt_1')"


def test_enroll_posts_keys_and_maps_refusals() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if bodies[-1]["code"] == "GOOD":
            return httpx.Response(200, json={"agent_id": "agt_9", "tenant": "t",
                                             "agent_group": "g", "portal_keys": []})
        return httpx.Response(403, json={"error": "enrollment_code_used", "message": "new code"})

    mock = httpx.MockTransport(handler)
    keys = {"sign_key": "abc"}
    assert enroll("http://127.0.0.1:9", "GOOD", "dc1", keys, transport=mock)["agent_id"] == "agt_9"
    assert bodies[0] == {"code": "GOOD", "name": "dc1", "public_keys": keys}
    with pytest.raises(EnrollmentFailed) as info:
        enroll("http://127.0.0.1:9", "USED-CODE-1234", "dc1", keys, transport=mock)
    assert info.value.code == "enrollment_code_used"
    assert "USED-CODE-1234" not in str(info.value)
    with pytest.raises(ValueError):
        enroll("http://relay.example.com", "GOOD", "dc1", keys, transport=mock)


def test_b64url_decoding_tolerates_missing_padding() -> None:
    assert b64url_decode("AQ") == b"\x01"
