"""RelayTransport over real HTTP: signing and enrollment against the real relay
(tests/servers/relay.py); status mapping, network faults, keep-alive, stale
connections, redirects and TLS against a tiny scripted HTTP server on loopback
(tests/servers/scripted_http.py), for the answers a real relay gives only by accident."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

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
from tests.servers.certs import make_server_cert
from tests.servers.relay import RelayProcess, fake_envelope, public_key_b64, start_relay
from tests.servers.scripted_http import DROP, GARBAGE, Received, Reply, ScriptedServer
from wire.canonical import b64url_decode
from wire.canonical import b64url_encode as b64url
from wire.http_connection import MAX_ANSWER_BYTES
from wire.signed_call import auth_message

KEY = Ed25519PrivateKey.generate()
LEASE = Lease("lse_1", "req-1", b"{}", 0.0)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path_factory.mktemp("relay"))
    yield process
    process.stop()


def _ok(request: Received) -> Reply:
    return Reply(200, {"lease_id": "lse_1", "lease_expires_at": 200.0})


def test_the_real_relay_accepts_every_signed_call(relay: RelayProcess) -> None:
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as transport, relay.portal(token) as portal:
        assert transport.lease(wait=0) is None
        request_id = portal.submit(fake_envelope(tenant))
        lease = transport.lease(wait=5)
        assert lease is not None and lease.request_id == request_id
        assert transport.renew(lease).expires_at >= lease.expires_at
        transport.heartbeat(agent.heartbeat_body())
        assert transport.portal_keys() == []
        transport.complete(lease, b'{"status": "succeeded"}')
        assert portal.poll_result(request_id) == ("done", b'{"status": "succeeded"}')
        with pytest.raises(LeaseLost):
            transport.renew(lease)
    impostor = RelayTransport(relay.base_url, agent.agent_id, Ed25519PrivateKey.generate())
    with impostor, pytest.raises(AuthenticationFailed) as info:
        impostor.lease(wait=0)
    assert info.value.status == 401


def test_the_signature_covers_method_raw_path_and_body() -> None:
    with ScriptedServer(_ok) as server, RelayTransport(server.url, "agt_1", KEY) as transport:
        transport.renew(LEASE)
        transport.complete(LEASE, b'{"status": "succeeded"}')
    for seen in server.requests:
        creds = parse_agent_authorization(seen.headers["authorization"])
        assert creds.agent_id == "agt_1"
        message = auth_message(seen.method, seen.target.encode(), creds.ts, creds.nonce, seen.body)
        KEY.public_key().verify(creds.signature, message)  # raises if wrong
        assert seen.headers["user-agent"] == "writeback-agent"
    assert [r.target for r in server.requests] == [
        "/v1/agent/leases/lse_1/renew", "/v1/agent/results"]
    assert json.loads(server.requests[1].body) == {
        "lease_id": "lse_1", "request_id": "req-1", "result": '{"status": "succeeded"}'}
    assert server.requests[1].headers["content-type"] == "application/json"


def test_query_and_base_path_are_signed_as_sent() -> None:
    with ScriptedServer(lambda r: Reply(204)) as server, RelayTransport(
        server.url + "/relay/", "agt_1", KEY
    ) as transport:
        assert transport.lease(wait=2.5) is None
        assert transport.lease_many(wait=0, most=3) == []
    assert [r.target for r in server.requests] == [
        "/relay/v1/agent/lease?wait=2.5", "/relay/v1/agent/leases?wait=0&max=3"]
    for seen in server.requests:
        creds = parse_agent_authorization(seen.headers["authorization"])
        message = auth_message(seen.method, seen.target.encode(), creds.ts, creds.nonce, b"")
        KEY.public_key().verify(creds.signature, message)


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransportUnavailable), (502, TransportUnavailable), (503, TransportUnavailable),
     (429, TransportUnavailable), (409, LeaseLost), (401, AuthenticationFailed),
     (403, AuthenticationFailed), (404, TransportError), (422, TransportError)],
)
def test_status_mapping(status: int, error: type[TransportError]) -> None:
    answer = Reply(status, {"error": "some_code", "message": "why"})
    with ScriptedServer(lambda r: answer) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport, pytest.raises(error) as info:
        transport.renew(LEASE)
    assert (info.value.status, info.value.code) == (status, "some_code")
    assert type(info.value) is error or error is TransportError


def test_a_500_that_is_not_json_is_unavailable_with_its_text() -> None:
    with ScriptedServer(lambda r: Reply(500)) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport, pytest.raises(TransportUnavailable) as info:
        transport.heartbeat(b"{}")
    assert info.value.status == 500


def test_a_200_that_is_not_json_is_a_transport_error() -> None:
    with ScriptedServer(lambda r: Reply(200, headers={"X": "y"})) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport, pytest.raises(TransportError, match="not JSON"):
        transport.renew(LEASE)


@pytest.mark.parametrize("fault", [DROP, GARBAGE])
def test_network_faults_are_unavailable_and_nothing_is_resent(fault: str) -> None:
    with ScriptedServer(lambda r: fault) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport, pytest.raises(TransportUnavailable, match="unreachable"):
        transport.permit(LEASE, "user-1", ordered=True)
    assert len(server.requests) == 1  # a permit that may have arrived is never re-sent


def test_a_huge_answer_is_refused_unread_and_the_next_call_works() -> None:
    """A broken or hostile relay cannot make the agent buffer an unbounded answer: past
    MAX_ANSWER_BYTES the call fails (retryable) and its connection is dropped."""
    huge = {"lease_id": "lse_1", "envelope": "x" * (MAX_ANSWER_BYTES + 1024)}
    answers = iter([Reply(200, huge), Reply(204)])
    with ScriptedServer(lambda r: next(answers)) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport:
        with pytest.raises(TransportUnavailable, match="AnswerTooLarge"):
            transport.lease(wait=0)
        assert transport.lease(wait=0) is None
        assert server.connections == 2


def test_a_slow_answer_times_out_but_a_long_poll_may_take_its_wait() -> None:
    with ScriptedServer(lambda r: Reply(204, delay=1.2)) as server, RelayTransport(
        server.url, "agt_1", KEY, timeout=0.5
    ) as transport:
        with pytest.raises(TransportUnavailable, match="timed out"):
            transport.heartbeat(b"{}")
        assert transport.lease(wait=1) is None  # wait + margin + timeout


def test_real_connection_refused_is_unavailable() -> None:
    transport = RelayTransport("http://127.0.0.1:1", "agt_1", KEY, timeout=2)
    with transport, pytest.raises(TransportUnavailable, match="unreachable"):
        transport.lease(wait=0)


def test_keep_alive_reuses_one_connection_and_replaces_a_stale_one() -> None:
    with ScriptedServer(_ok) as server, RelayTransport(server.url, "agt_1", KEY) as transport:
        for _ in range(5):
            transport.renew(LEASE)
        assert server.connections == 1
        server.drop_idle_connections()  # the relay restarted / timed the idle connection out
        transport.renew(LEASE)  # checked before reuse: a new connection, sent once
        assert (server.connections, len(server.requests)) == (2, 6)


def test_connection_close_is_honoured() -> None:
    with ScriptedServer(lambda r: Reply(204, close=True)) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport:
        for _ in range(3):
            transport.heartbeat(b"{}")
    assert (server.connections, len(server.requests)) == (3, 3)


def test_redirects_are_not_followed() -> None:
    moved = Reply(307, {"error": "moved"}, headers={"Location": "http://127.0.0.1:1/elsewhere"})
    with ScriptedServer(lambda r: moved) as server, RelayTransport(
        server.url, "agt_1", KEY
    ) as transport, pytest.raises(TransportError):
        transport.renew(LEASE)
    assert len(server.requests) == 1


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


def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    cert = make_server_cert(tmp_path, ["127.0.0.1"])
    with ScriptedServer(_ok, cert=cert) as server:
        with RelayTransport(server.url, "agt_1", KEY) as untrusting, pytest.raises(
            TransportUnavailable, match="CERTIFICATE_VERIFY_FAILED"
        ):
            untrusting.renew(LEASE)
        with RelayTransport(server.url, "agt_1", KEY, ca_file=str(cert.ca_file)) as trusting:
            for _ in range(3):
                assert trusting.renew(LEASE).expires_at == 200.0
        assert server.connections == 1  # kept alive (the refused handshake never got one)
        with RelayTransport(server.url, "agt_1", KEY, verify=False) as unverified:
            assert unverified.renew(LEASE).expires_at == 200.0


def test_tls_checks_the_host_name(tmp_path: Path) -> None:
    cert = make_server_cert(tmp_path, ["relay.example.com"])
    with ScriptedServer(_ok, cert=cert) as server, RelayTransport(
        server.url, "agt_1", KEY, ca_file=str(cert.ca_file)
    ) as transport, pytest.raises(TransportUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        transport.renew(LEASE)


def test_the_signing_key_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    raw = KEY.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    secret_forms = {raw.hex(), repr(raw)}
    secret_forms |= {base64.b64encode(raw).decode(), b64url(raw)}
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(lambda r: Reply(401, {"error": "bad_signature"})) as server:
        transport = RelayTransport(server.url, "agt_1", KEY)
        with pytest.raises(AuthenticationFailed) as info:
            transport.heartbeat(b"{}")
        transport.close()
    texts = [repr(transport), str(transport), str(info.value), repr(info.value), caplog.text,
             repr(vars(transport)), repr(vars(transport._http))]
    for text in texts:
        for secret in secret_forms:
            assert secret not in text
    assert repr(transport) == f"RelayTransport(base_url={server.url!r}, agent_id='agt_1')"


def test_enroll_at_the_real_relay_and_its_refusals(relay: RelayProcess) -> None:
    tenant, _ = relay.create_tenant()
    code = relay.enrollment_code(tenant)
    keys = {"sign_key": public_key_b64(KEY)}
    enrolled = enroll(relay.base_url, code, "dc1", keys)
    assert enrolled["agent_id"].startswith("agt_") and enrolled["tenant"] == tenant
    with pytest.raises(EnrollmentFailed) as info:
        enroll(relay.base_url, code, "dc1", keys)
    assert info.value.code == "enrollment_code_used"
    assert code not in str(info.value)
    with pytest.raises(ValueError):
        enroll("http://relay.example.com", code, "dc1", keys)
    with pytest.raises(TransportUnavailable):
        enroll("http://127.0.0.1:1", code, "dc1", keys)


def test_b64url_decoding_tolerates_missing_padding() -> None:
    assert b64url_decode("AQ") == b"\x01"


class _ConnectProxy:
    """A minimal CONNECT proxy on loopback: records each CONNECT target, then pipes."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            target = head.split(b" ")[1].decode()
            self.targets.append(target)
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self._sockets += [client, upstream]
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def test_https_goes_through_the_https_proxy_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = make_server_cert(tmp_path, ["127.0.0.1"])
    proxy = _ConnectProxy()
    for name in ("no_proxy", "NO_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", proxy.url)
    try:
        with ScriptedServer(_ok, cert=cert) as server, RelayTransport(
            server.url, "agt_1", KEY, ca_file=str(cert.ca_file)
        ) as transport:
            assert transport.renew(LEASE).expires_at == 200.0  # TLS verified end to end
            assert proxy.targets == [server.url.removeprefix("https://")]
            monkeypatch.setenv("no_proxy", "127.0.0.1")
            with RelayTransport(server.url, "agt_1", KEY, ca_file=str(cert.ca_file)) as direct:
                direct.renew(LEASE)
            assert len(proxy.targets) == 1
    finally:
        proxy.close()
