"""Errors in one shape from the running relay, and heartbeats verified and shown."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.transports.relay import authorization_header
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope, signed_heartbeat


def _admin(relay: RelayProcess, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {relay.admin_token}"}
    return httpx.request(method, relay.base_url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def _post_signed(agent: EnrolledAgent, path: str, body: bytes) -> httpx.Response:
    header = authorization_header(agent.signing_key, agent.agent_id, "POST", path.encode(), body)
    return httpx.post(agent.base_url + path, content=body, headers={"Authorization": header})


def test_store_errors_answer_with_stable_codes(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    duplicate = _admin(relay, "POST", "/v1/admin/tenants", json={"tenant": tenant[0]})
    assert (duplicate.status_code, duplicate.json()["error"]) == (409, "tenant_exists")
    body = {"tenant": "nobody", "agent_group": "g", "ttl": 60}
    unknown = _admin(relay, "POST", "/v1/admin/enrollment-codes", json=body)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_tenant")
    gone = _admin(relay, "DELETE", "/v1/admin/agents/agt_nobody")
    assert (gone.status_code, gone.json()["error"]) == (404, "unknown_agent")
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    from wire.canonical import b64url_encode

    relay.add_portal_key(tenant[0], "k1", b64url_encode(key))
    other = b64url_encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    taken = _admin(relay, "POST", "/v1/admin/portal-keys",
                   json={"tenant": tenant[0], "kid": "k1", "public_key": other})
    assert (taken.status_code, taken.json()["error"]) == (409, "portal_key_exists")

    enroll_agent()
    envelope = fake_envelope(tenant[0], request_id="req-dup")
    headers = {"Authorization": f"Bearer {tenant[1]}"}
    first = httpx.post(relay.base_url + "/v1/requests", content=envelope, headers=headers)
    assert first.status_code == 202
    again = httpx.post(relay.base_url + "/v1/requests", content=envelope, headers=headers)
    assert (again.status_code, again.json()["error"]) == (409, "duplicate_id")


def test_framework_refusals_use_our_shape(relay: RelayProcess) -> None:
    missing = httpx.get(relay.base_url + "/v1/no-such-route")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = httpx.delete(relay.base_url + "/healthz")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    not_utf8 = httpx.post(relay.base_url + "/v1/agents/enroll", content=b'{"code":"\xff\xfe"}',
                          headers={"Content-Type": "application/json"})
    assert not_utf8.status_code == 400
    assert not_utf8.json()["error"] == "invalid_json"  # the same code on every route
    not_json = httpx.post(relay.base_url + "/v1/agents/enroll", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert (not_json.status_code, not_json.json()["error"]) == (400, "invalid_json")


def test_heartbeats_are_verified_and_shown_to_operators(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agent = enroll_agent("hq")
    enroll_agent("branch")
    path = "/v1/agent/heartbeat"
    unsigned = _post_signed(agent, path, b'{"version":"1.0"}')
    assert (unsigned.status_code, unsigned.json()["error"]) == (422, "invalid_heartbeat")
    forged = signed_heartbeat(Ed25519PrivateKey.generate(), agent.agent_id)
    assert _post_signed(agent, path, forged).json()["error"] == "invalid_heartbeat"
    someone_else = signed_heartbeat(agent.signing_key, "agt_someone_else")
    assert _post_signed(agent, path, someone_else).json()["error"] == "invalid_heartbeat"

    sent_at = int(time.time())
    beat = agent.heartbeat_body(version="1.2.3", sent_at=sent_at,
                                directories={"corp-ad": True, "ldap": False}, in_flight=2)
    assert _post_signed(agent, path, beat).status_code == 200

    listed = _admin(relay, "GET", f"/v1/admin/agents?tenant={tenant[0]}&group=hq").json()
    (shown,) = listed["agents"]
    assert shown["agent_id"] == agent.agent_id
    assert shown["version"] == "1.2.3"
    assert shown["last_heartbeat"] == sent_at
    assert shown["directories"] == {"corp-ad": True, "ldap": False}
    assert shown["in_flight"] == 2
    assert shown["online"] is True
    everyone = _admin(relay, "GET", f"/v1/admin/agents?tenant={tenant[0]}").json()["agents"]
    assert {a["agent_group"] for a in everyone} == {"hq", "branch"}
    never = next(a for a in everyone if a["agent_group"] == "branch")
    assert never["version"] is None and never["last_heartbeat"] is None


def test_a_body_that_is_not_utf8_is_invalid_json_on_every_portal_route(
    relay: RelayProcess, tenant: tuple[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {tenant[1]}", "Content-Type": "application/json"}
    for route in ("/v1/requests", "/v1/requests:batch", "/v1/requests/results:wait"):
        answer = httpx.post(relay.base_url + route, content=b'{"x":"\xff\xfe"}', headers=headers)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_json"), route
