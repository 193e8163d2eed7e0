"""Enrollment, agent authentication, and the admin CLI against a running relay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.transports.base import AuthenticationFailed, EnrollmentFailed
from agent.transports.relay import RelayTransport, authorization_header, enroll
from tests.servers.relay import EnrolledAgent, RelayProcess, public_key_b64, signed_heartbeat

REPO = Path(__file__).resolve().parents[3]


def _keys() -> tuple[Ed25519PrivateKey, dict[str, str]]:
    key = Ed25519PrivateKey.generate()
    return key, {"sign_key": public_key_b64(key)}


def test_enrollment_code_works_once(relay: RelayProcess, tenant: tuple[str, str]) -> None:
    code = relay.enrollment_code(tenant[0], "branch-a")
    _, public_keys = _keys()
    result = enroll(relay.base_url, code.lower(), "dc-agent-1", public_keys)  # case-insensitive
    assert result["tenant"] == tenant[0]
    assert result["agent_group"] == "branch-a"
    assert result["agent_id"].startswith("agt_")
    assert result["portal_keys"] == []
    with pytest.raises(EnrollmentFailed) as info:
        enroll(relay.base_url, code, "dc-agent-2", _keys()[1])
    assert info.value.code == "enrollment_code_used"
    assert code not in str(info.value)


def test_expired_and_unknown_codes(relay: RelayProcess, tenant: tuple[str, str]) -> None:
    code = relay.enrollment_code(tenant[0], ttl=1)
    time.sleep(1.2)
    with pytest.raises(EnrollmentFailed) as info:
        enroll(relay.base_url, code, "late", _keys()[1])
    assert info.value.code == "enrollment_code_expired"
    with pytest.raises(EnrollmentFailed) as info:
        enroll(relay.base_url, "AAAA-BBBB-CCCC-DDDD", "guess", _keys()[1])
    assert info.value.code == "invalid_enrollment_code"


def test_enrollment_needs_an_ed25519_sign_key(relay: RelayProcess, tenant: tuple[str, str]) -> None:
    code = relay.enrollment_code(tenant[0])
    with pytest.raises(EnrollmentFailed) as info:
        enroll(relay.base_url, code, "bad", {"sign_key": "bm90IGEga2V5"})
    assert info.value.code == "invalid_public_keys"
    with pytest.raises(EnrollmentFailed):
        enroll(relay.base_url, code, "bad", {"hpke_key": "x"})
    enroll(relay.base_url, code, "good", _keys()[1])  # refused attempts did not burn the code


def test_enrollment_returns_portal_keys(relay: RelayProcess, tenant: tuple[str, str]) -> None:
    portal_key = public_key_b64(Ed25519PrivateKey.generate())
    relay.add_portal_key(tenant[0], "p1", portal_key, not_before=1000.0)
    result = enroll(relay.base_url, relay.enrollment_code(tenant[0]), "a", _keys()[1])
    assert result["portal_keys"] == [
        {"kid": "p1", "public_key": portal_key, "not_before": 1000.0, "not_after": None}
    ]


def test_bad_signature(relay: RelayProcess, enroll_agent: Callable[..., EnrolledAgent]) -> None:
    agent = enroll_agent()
    impostor = RelayTransport(relay.base_url, agent.agent_id, Ed25519PrivateKey.generate())
    with impostor, pytest.raises(AuthenticationFailed) as info:
        impostor.lease(wait=0)
    assert info.value.code == "bad_signature"
    assert info.value.status == 401


def _signed(
    agent: EnrolledAgent, path: str, body: bytes, *, sign_path: str | None = None,
    sign_body: bytes | None = None, now: float | None = None,
) -> httpx.Response:
    header = authorization_header(
        agent.signing_key, agent.agent_id, "POST", (sign_path or path).encode(),
        body if sign_body is None else sign_body, now=now,
    )
    return httpx.post(agent.base_url + path, content=body, headers={"Authorization": header})


def test_signature_covers_ts_path_and_body(enroll_agent: Callable[..., EnrolledAgent]) -> None:
    agent = enroll_agent()
    beat = agent.heartbeat_body()
    assert _signed(agent, "/v1/agent/heartbeat", beat).status_code == 200
    skewed = _signed(agent, "/v1/agent/heartbeat", b"{}", now=time.time() - 400)
    assert (skewed.status_code, skewed.json()["error"]) == (401, "clock_skew")
    future = _signed(agent, "/v1/agent/heartbeat", b"{}", now=time.time() + 400)
    assert future.json()["error"] == "clock_skew"
    moved = _signed(agent, "/v1/agent/heartbeat", b"{}", sign_path="/v1/agent/lease?wait=0")
    assert (moved.status_code, moved.json()["error"]) == (401, "bad_signature")
    tampered = _signed(agent, "/v1/agent/heartbeat", beat + b" ", sign_body=beat)
    assert tampered.json()["error"] == "bad_signature"
    query = _signed(agent, "/v1/agent/lease?wait=0", b"", sign_path="/v1/agent/lease?wait=9")
    assert query.json()["error"] == "bad_signature"


def test_missing_or_malformed_authorization(relay: RelayProcess) -> None:
    url = relay.base_url + "/v1/agent/heartbeat"
    assert httpx.post(url, content=b"{}").json()["error"] == "missing_authorization"
    bad = httpx.post(url, content=b"{}", headers={"Authorization": "WBA1 agent=x"})
    assert (bad.status_code, bad.json()["error"]) == (401, "malformed_authorization")


def test_unknown_agent(relay: RelayProcess) -> None:
    ghost = RelayTransport(relay.base_url, "agt_ghost", Ed25519PrivateKey.generate())
    with ghost, pytest.raises(AuthenticationFailed) as info:
        ghost.heartbeat(signed_heartbeat(Ed25519PrivateKey.generate(), "agt_ghost"))
    assert info.value.code == "unknown_agent"


def test_removed_agent(relay: RelayProcess, enroll_agent: Callable[..., EnrolledAgent],
                       tenant: tuple[str, str]) -> None:
    agent = enroll_agent()
    transport = agent.transport()
    transport.heartbeat(agent.heartbeat_body())
    relay.remove_agent(agent.agent_id)
    with pytest.raises(AuthenticationFailed) as info:
        transport.lease(wait=0)
    assert info.value.code == "agent_removed"
    with relay.portal(tenant[1]) as portal:
        assert portal.agents("default") == []


def test_admin_api_needs_the_admin_token(relay: RelayProcess) -> None:
    response = httpx.post(relay.base_url + "/v1/admin/tenants", json={"tenant": "x"},
                          headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_admin_token")
    assert httpx.post(relay.base_url + "/v1/admin/tenants", json={"tenant": "x"}).status_code == 401


def _cli(db: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "cloud.relay.cli", "--db", str(db), *args],
        capture_output=True, text=True, env=env, check=True, timeout=30,
    )
    return done.stdout.strip()


def test_admin_cli_on_the_live_database(relay: RelayProcess) -> None:
    """tenant add / enrollment-code / portal-key add while `serve` runs on the same file."""
    token = _cli(relay.db_path, "tenant", "add", "cli-tenant")
    assert token.startswith("wbr_")
    code = _cli(relay.db_path, "enrollment-code", "--tenant", "cli-tenant", "--group", "g",
                "--ttl", "600")
    portal_key = public_key_b64(Ed25519PrivateKey.generate())
    _cli(relay.db_path, "portal-key", "add", "--tenant", "cli-tenant", "--kid", "k1",
         "--public-key", portal_key, "--not-after", "2100-01-01T00:00:00+00:00")
    result = enroll(relay.base_url, code, "cli-agent", _keys()[1])
    assert (result["tenant"], result["agent_group"]) == ("cli-tenant", "g")
    assert result["portal_keys"][0]["kid"] == "k1"
    with relay.portal(token) as portal:
        assert [a["name"] for a in portal.agents("g")] == ["cli-agent"]
    _cli(relay.db_path, "agent", "remove", result["agent_id"])
    with relay.portal(token) as portal:
        assert portal.agents("g") == []
