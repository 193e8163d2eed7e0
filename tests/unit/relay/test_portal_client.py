"""PortalClient's HTTP behaviour over real sockets, against a scripted loopback server
(tests/servers/scripted_http.py) for the answers a real relay gives only by accident;
its calls against the real relay are in tests/integration/relay."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.relay.client import (
    NoAgentOnline,
    PortalClient,
    RateLimited,
    RelayError,
    RelayUnavailable,
    UnknownRequest,
)
from tests.servers.certs import make_server_cert
from tests.servers.scripted_http import DROP, GARBAGE, Reply, ScriptedServer

TOKEN = "portal-token-s3cret"  # a test value


def test_token_user_agent_and_keep_alive() -> None:
    with ScriptedServer(lambda r: Reply(200, {"id": "r1"})) as server, PortalClient(
        server.url + "/", TOKEN
    ) as portal:
        assert [portal.submit(b'{"x": 1}') for _ in range(3)] == ["r1"] * 3
        assert TOKEN not in repr(portal) and TOKEN not in repr(vars(portal._http))
    seen = server.requests[0]
    assert (seen.method, seen.target, seen.body) == ("POST", "/v1/requests", b'{"x": 1}')
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["user-agent"] == "writeback-portal"
    assert seen.headers["content-type"] == "application/json"
    assert server.connections == 1


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (Reply(503, {"error": "no_agent_online"}), NoAgentOnline, "no_agent_online"),
        (Reply(503, {"error": "busy"}), RelayUnavailable, "busy"),
        (Reply(404, {"error": "unknown_request"}), UnknownRequest, "unknown_request"),
        (Reply(307, headers={"Location": "http://127.0.0.1:1/"}), RelayError, None),
    ],
)
def test_refusals(reply: Reply, error: type[RelayError], code: str | None) -> None:
    with ScriptedServer(lambda r: reply) as server, PortalClient(server.url, TOKEN) as portal, \
            pytest.raises(error) as info:
        portal.poll_result("r1")
    assert (type(info.value), info.value.code, info.value.status) == (error, code, reply.status)
    assert len(server.requests) == 1


def test_rate_limited_says_when_to_retry() -> None:
    answer = Reply(429, {"error": "rate_limited"}, headers={"Retry-After": "7"})
    with ScriptedServer(lambda r: answer) as server, PortalClient(server.url, TOKEN) as portal, \
            pytest.raises(RateLimited) as info:
        portal.submit(b"{}")
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("fault", [DROP, GARBAGE])
def test_network_faults_are_unavailable_and_nothing_is_resent(fault: str) -> None:
    with ScriptedServer(lambda r: fault) as server, PortalClient(server.url, TOKEN) as portal, \
            pytest.raises(RelayUnavailable) as info:
        portal.submit(b"{}")
    assert len(server.requests) == 1
    assert TOKEN not in str(info.value)


def test_a_stale_connection_is_replaced_before_sending() -> None:
    with ScriptedServer(lambda r: Reply(200, {"id": "r1"})) as server, PortalClient(
        server.url, TOKEN
    ) as portal:
        portal.submit(b"{}")
        server.drop_idle_connections()
        assert portal.submit(b"{}") == "r1"
    assert (server.connections, len(server.requests)) == (2, 2)


def test_tls_with_a_ca_file_and_verified_by_default(tmp_path: Path) -> None:
    cert = make_server_cert(tmp_path, ["127.0.0.1"])
    with ScriptedServer(lambda r: Reply(200, {"id": "r1"}), cert=cert) as server:
        with PortalClient(server.url, TOKEN, verify=str(cert.ca_file)) as portal:
            assert portal.submit(b"{}") == "r1"
        with PortalClient(server.url, TOKEN) as portal, pytest.raises(
            RelayUnavailable, match="CERTIFICATE_VERIFY_FAILED"
        ):
            portal.submit(b"{}")
