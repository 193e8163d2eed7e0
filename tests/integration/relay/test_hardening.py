"""Relay hardening against a running relay: bounded bodies, finite numbers, signed
calls usable once (across two relay processes on one database), per-tenant rate
limits and long-poll caps, and authentication before the body is parsed."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.transports.base import EnrollmentFailed
from agent.transports.relay import authorization_header, enroll
from cloud.relay.client import PortalClient, RateLimited, RelayError
from tests.servers.relay import (
    EnrolledAgent,
    RelayProcess,
    fake_envelope,
    public_key_b64,
    start_relay,
)


def _nested(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"k": value}
    return value


def _sign_key() -> dict[str, str]:
    return {"sign_key": public_key_b64(Ed25519PrivateKey.generate())}


def _signed_post(agent: EnrolledAgent, path: str, body: bytes = b"") -> tuple[str, bytes]:
    header = authorization_header(agent.signing_key, agent.agent_id, "POST", path.encode(), body)
    return header, body


def test_deeply_nested_public_keys_are_refused_at_registration(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    code = relay.enrollment_code(tenant[0])
    with pytest.raises(EnrollmentFailed) as info:
        enroll(relay.base_url, code, "deep", {**_sign_key(), "extra": _nested(256)})
    assert info.value.status == 422
    agent = enroll_agent()
    update = json.dumps(
        {"public_keys": {"sign_key": public_key_b64(agent.signing_key), "x": _nested(256)}}
    )
    header = authorization_header(agent.signing_key, agent.agent_id, "PUT", b"/v1/agent/keys",
                                  update.encode())
    refused = httpx.put(relay.base_url + "/v1/agent/keys", content=update,
                        headers={"Authorization": header, "Content-Type": "application/json"})
    assert refused.status_code == 422
    enroll(relay.base_url, code, "sane", _sign_key())  # the refusal did not burn the code


def test_agent_list_skips_a_stored_record_out_of_bounds(
    relay: RelayProcess, portal: object, enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    """A record stored before registration was bounded must not fail the listing."""
    bad, good = enroll_agent(), enroll_agent()
    with sqlite3.connect(relay.db_path) as db:
        db.execute("UPDATE agents SET public_keys = ? WHERE agent_id = ?",
                   (json.dumps({"sign_key": "x", "deep": _nested(256)}), bad.agent_id))
    listed = portal.agents("default")  # type: ignore[attr-defined]
    assert [a["agent_id"] for a in listed] == [good.agent_id]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_exp_is_a_400_naming_the_field(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent],
    number: str,
) -> None:
    enroll_agent()
    body = fake_envelope(tenant[0])
    doc = json.loads(body)
    exp = json.dumps(doc["header"]["exp"])
    bad = body.replace(f'"exp":{exp}'.encode(), f'"exp":{number}'.encode())
    assert bad != body
    response = httpx.post(relay.base_url + "/v1/requests", content=bad,
                          headers={"Authorization": f"Bearer {tenant[1]}"})
    assert response.status_code == 400
    assert response.json()["field"] == "header.exp"
    assert "finite" in response.json()["message"]


def test_a_replayed_result_batch_is_refused_whole(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    """The batch route answers each item on its own (stored, lease_lost, malformed...):
    a replay must still be refused as a whole (401), not item by item with a 200."""
    agent = enroll_agent()
    with relay.portal(tenant[1]) as portal, agent.transport() as transport:
        for n in range(2):
            portal.submit(fake_envelope(tenant[0], request_id=f"replay-{n}"))
        leases = [transport.lease(wait=5) for _ in range(2)]
        items = [{"lease_id": lease.lease_id, "request_id": lease.request_id,
                  "result": json.dumps({"n": 1})} for lease in leases if lease is not None]
        assert len(items) == 2
        body = json.dumps({"results": items}).encode()
        header, _ = _signed_post(agent, "/v1/agent/results/batch", body)
        sent: dict[str, Any] = {"content": body, "headers": {
            "Authorization": header, "Content-Type": "application/json"}}
        answer = httpx.post(relay.base_url + "/v1/agent/results/batch", **sent)
        assert answer.status_code == 200, answer.text
        assert [o["outcome"] for o in answer.json()["outcomes"]] == ["stored", "stored"]
        replay = httpx.post(relay.base_url + "/v1/agent/results/batch", **sent)
        assert (replay.status_code, replay.json()["error"]) == (401, "replayed")


def test_a_signed_call_is_usable_once_even_on_another_relay(tmp_path: Path) -> None:
    first = start_relay(tmp_path / "shared")
    second = start_relay(tmp_path / "shared")  # same database file
    try:
        tenant, token = first.create_tenant()
        agent = first.enroll_agent(tenant)
        heartbeat = agent.heartbeat_body()
        header, _ = _signed_post(agent, "/v1/agent/heartbeat", heartbeat)
        sent: dict[str, Any] = {"content": heartbeat, "headers": {"Authorization": header}}
        assert httpx.post(first.base_url + "/v1/agent/heartbeat", **sent).status_code == 200
        for relay in (first, second):
            replay = httpx.post(relay.base_url + "/v1/agent/heartbeat", **sent)
            assert (replay.status_code, replay.json()["error"]) == (401, "replayed")

        # A captured lease call, replayed 1 s later when there is work, gets nothing.
        lease_header, _ = _signed_post(agent, "/v1/agent/lease?wait=0")
        lease: dict[str, Any] = {"headers": {"Authorization": lease_header}}
        assert httpx.post(first.base_url + "/v1/agent/lease?wait=0", **lease).status_code == 204
        with first.portal(token) as portal:
            portal.submit(fake_envelope(tenant))
        time.sleep(1)
        replay = httpx.post(second.base_url + "/v1/agent/lease?wait=0", **lease)
        assert (replay.status_code, replay.json()["error"]) == (401, "replayed")
        with agent.transport() as transport:
            assert transport.lease(wait=0) is not None  # still queued for the real agent
    finally:
        first.stop()
        second.stop()


def test_enrollment_attempts_are_rate_limited(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(enroll_rate_per_client="3/minute")
    for _ in range(3):
        with pytest.raises(EnrollmentFailed):
            enroll(relay.base_url, "AAAA-BBBB-CCCC-DDDD", "guess", _sign_key())
    response = httpx.post(relay.base_url + "/v1/agents/enroll",
                          json={"code": "AAAA", "name": "n", "public_keys": _sign_key()})
    assert (response.status_code, response.json()["error"]) == (429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_submits_are_rate_limited_per_tenant(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(submit_rate="3/minute")
    (a, a_token), (b, b_token) = relay.create_tenant(), relay.create_tenant()
    relay.enroll_agent(a)
    relay.enroll_agent(b)
    with relay.portal(a_token) as portal_a, relay.portal(b_token) as portal_b:
        for _ in range(3):
            portal_a.submit(fake_envelope(a))
        with pytest.raises(RateLimited) as info:
            portal_a.submit(fake_envelope(a))
        assert info.value.retry_after >= 1
        portal_b.submit(fake_envelope(b))  # another tenant is not affected


def test_long_polls_are_capped_per_tenant(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(max_long_polls_per_tenant=2)
    (a, _), (b, _) = relay.create_tenant(), relay.create_tenant()
    agents_a = [relay.enroll_agent(a) for _ in range(3)]
    agent_b = relay.enroll_agent(b)
    parked = [threading.Thread(target=_lease, args=(agent, 3.0)) for agent in agents_a[:2]]
    for thread in parked:
        thread.start()
    time.sleep(1.0)
    header, _ = _signed_post(agents_a[2], "/v1/agent/lease?wait=1")
    third = httpx.post(relay.base_url + "/v1/agent/lease?wait=1",
                       headers={"Authorization": header})
    assert (third.status_code, third.json()["error"]) == (429, "too_many_long_polls")
    assert third.headers["Retry-After"] == "1"
    header, _ = _signed_post(agent_b, "/v1/agent/lease?wait=0")
    other = httpx.post(relay.base_url + "/v1/agent/lease?wait=0", headers={"Authorization": header})
    assert other.status_code == 204
    for thread in parked:
        thread.join()
    with agents_a[2].transport() as transport:
        assert transport.lease(wait=0) is None  # slots are given back


def test_portal_waits_never_lock_the_agents_out(relay_factory: Callable[..., RelayProcess]) -> None:
    """A tenant's portals filling its long-poll slots with result waits must not stop
    its agents from leasing: else no request is served until every wait runs out."""
    relay = relay_factory(max_long_polls_per_tenant=2)
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with relay.portal(token) as portal:
        ids = [portal.submit(fake_envelope(tenant)) for _ in range(3)]
        parked = [threading.Thread(target=_wait_quietly, args=(portal, request_id))
                  for request_id in ids[:2]]
        for thread in parked:
            thread.start()
        time.sleep(1.0)  # both waits parked in the relay
        with pytest.raises(RateLimited) as info:
            portal.poll_result(ids[2], wait=1)  # the portal's third: over its 2
        assert info.value.code == "too_many_long_polls"
        with agent.transport() as transport:
            lease = transport.lease(wait=1)  # the agents' slots are their own
        assert lease is not None and lease.request_id in ids
        for thread in parked:
            thread.join()


def _wait_quietly(portal: PortalClient, request_id: str) -> None:
    with contextlib.suppress(RelayError):
        portal.wait_result(request_id, timeout=3)


def _lease(agent: EnrolledAgent, wait: float) -> None:
    with agent.transport() as transport:
        transport.lease(wait=wait)


def test_unauthenticated_malformed_bodies_get_401(relay: RelayProcess) -> None:
    for path in ("/v1/agent/results", "/v1/agent/heartbeat", "/v1/requests",
                 "/v1/admin/tenants", "/v1/admin/portal-keys"):
        for body in (b"{not json", b'{"x": 1}', b"\xff\xfe\x00"):
            response = httpx.post(relay.base_url + path, content=body,
                                  headers={"Content-Type": "application/json"})
            assert response.status_code == 401, (path, body, response.text)
            assert response.json()["error"] in {"missing_authorization", "missing_token",
                                                "invalid_admin_token"}


def test_result_body_nested_too_deep_is_refused_not_a_500(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agent = enroll_agent()
    deep = json.dumps({"lease_id": "lse_x", "request_id": "r1",
                       "result": "[" * 5000 + "]" * 5000}).encode()
    header, _ = _signed_post(agent, "/v1/agent/results", deep)
    response = httpx.post(relay.base_url + "/v1/agent/results", content=deep,
                          headers={"Authorization": header, "Content-Type": "application/json"})
    assert response.status_code == 422
