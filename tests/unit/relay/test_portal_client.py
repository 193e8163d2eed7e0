"""PortalClient's HTTP behaviour over real sockets, against a scripted loopback server
(tests/servers/scripted_http.py) for the answers a real relay gives only by accident;
its calls against the real relay are in tests/integration/relay."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from cloud.relay.client import (
    NoAgentOnline,
    PortalClient,
    RateLimited,
    RelayError,
    RelayUnavailable,
    RequestExpired,
    RequestMaybeQueued,
    UnknownRequest,
    nothing_queued,
)
from cloud.relay.portal_calls import PortalCalls
from tests.servers.certs import make_server_cert
from tests.servers.scripted_http import DROP, GARBAGE, Received, Reply, ScriptedServer

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


SUBMITTED = b'{"header": {"id": "r1", "tenant": "t"}}'


@pytest.mark.parametrize(
    ("lookup", "expected"),
    [
        (Reply(200, {"status": "succeeded"}), {"status": "succeeded"}),  # queued, answered
        (Reply(404, {"error": "unknown_request"}), RelayUnavailable),  # never queued
        (DROP, RequestMaybeQueued),  # the relay can't say: a write may still happen
    ],
)
def test_submit_and_wait_after_a_lost_answer_looks_the_request_up(
    lookup: Reply | str, expected: object
) -> None:
    def script(request: Received) -> Reply | str:
        return DROP if request.method == "POST" else lookup

    with ScriptedServer(script) as server, PortalClient(server.url, TOKEN) as portal:
        if isinstance(expected, dict):
            assert json.loads(portal.submit_and_wait(SUBMITTED, timeout=5)) == expected
        else:
            with pytest.raises(expected) as info:  # type: ignore[call-overload]
                portal.submit_and_wait(SUBMITTED, timeout=5)
            assert type(info.value) is expected
    targets = [(r.method, r.target.split("?")[0]) for r in server.requests]
    assert targets[:2] == [("POST", "/v1/requests"), ("GET", "/v1/requests/r1/result")]
    assert targets.count(("POST", "/v1/requests")) == 1  # the submit is never sent again


def test_submit_and_wait_sends_nothing_more_when_the_envelope_has_no_id() -> None:
    with ScriptedServer(lambda r: DROP) as server, PortalClient(server.url, TOKEN) as portal, \
            pytest.raises(RelayUnavailable) as info:
        portal.submit_and_wait(b'{"header": {"id": "bad id!"}}', timeout=5)
    assert not isinstance(info.value, RequestMaybeQueued)
    assert len(server.requests) == 1


@pytest.mark.parametrize("body", [{"state": "queued"}, [1, 2]])
def test_submit_and_wait_pending_answer_without_an_id_is_a_clear_error(body: object) -> None:
    with ScriptedServer(lambda r: Reply(202, body)) as server, PortalClient(
        server.url, TOKEN
    ) as portal, pytest.raises(RelayError) as info:
        portal.submit_and_wait(SUBMITTED, timeout=5)
    assert type(info.value) is RelayError and "no id" in str(info.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("wait_answer", "expected"),
    [
        # The token revoked while the queued request was waited for: no proof that
        # nothing will be written.
        (Reply(403, {"error": "forbidden"}), RequestMaybeQueued),
        (Reply(503, {"error": "busy"}), RequestMaybeQueued),
        (Reply(410, {"state": "expired"}), RequestExpired),  # the relay says: never written
    ],
)
def test_an_error_after_the_request_was_queued_never_reads_nothing_queued(
    wait_answer: Reply, expected: type[RelayError]
) -> None:
    def script(request: Received) -> Reply:
        if request.method == "POST":  # submitted, still pending at the end of the wait
            return Reply(202, {"id": "r1", "state": "queued"})
        return wait_answer

    with ScriptedServer(script) as server, PortalClient(server.url, TOKEN) as portal, \
            pytest.raises(RelayError) as info:
        portal.submit_and_wait(SUBMITTED, timeout=5)
    assert type(info.value) is expected
    assert not nothing_queued(info.value)


def test_shared_calls_never_read_nothing_queued_after_the_submit() -> None:
    """PortalCalls: a request sent while another is on its way is submitted over the
    shared calls, then waited for over the shared long-poll; a refusal of that wait
    (a token revoked meanwhile) is RequestMaybeQueued, as in the one-call path."""
    first_sent = threading.Event()

    def script(request: Received) -> Reply:
        target = request.target.split("?")[0]
        if request.method == "POST" and "wait=" in request.target and target == "/v1/requests":
            first_sent.set()
            time.sleep(1.0)  # the lone request's call is still on its way
            return Reply(202, {"id": "first", "state": "queued"})
        if target == "/v1/requests":
            return Reply(202, {"id": "second", "state": "queued"})
        if target == "/v1/requests:batch":
            return Reply(200, {"outcomes": [{"id": "second", "state": "queued"}]})
        return Reply(403, {"error": "forbidden"})  # the waits, once queued

    errors: dict[str, BaseException] = {}

    def send(calls: PortalCalls, name: str) -> None:
        try:
            calls.send(json.dumps({"header": {"id": name}}).encode(), name, timeout=5)
        except RelayError as exc:
            errors[name] = exc

    with ScriptedServer(script) as server, PortalClient(server.url, TOKEN) as portal, \
            PortalCalls(portal) as calls:
        lone = threading.Thread(target=send, args=(calls, "first"))
        lone.start()
        assert first_sent.wait(5)
        send(calls, "second")
        lone.join(10)
    assert {name: type(exc) for name, exc in errors.items()} == {
        "first": RequestMaybeQueued, "second": RequestMaybeQueued,
    }
    assert any(r.target.startswith("/v1/requests/results:wait") for r in server.requests)
