"""Operating the relay: /readyz, /metrics, `agent list`, one JSON log with redaction,
and an OpenAPI document that says who may call what and what submit checks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope

REPO = Path(__file__).resolve().parents[3]


def _metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        if metric == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return None


def test_readyz_touches_the_database(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory()
    assert httpx.get(relay.base_url + "/readyz").json() == {"status": "ready"}
    locker = sqlite3.connect(relay.db_path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # holds the write lock, as a stuck writer would
        started = time.monotonic()
        down = httpx.get(relay.base_url + "/readyz", timeout=10)
        assert (down.status_code, down.json()["error"]) == (503, "database_unavailable")
        assert time.monotonic() - started < 5
        assert httpx.get(relay.base_url + "/healthz").status_code == 200  # the process is up
    finally:
        locker.execute("COMMIT")
        locker.close()
    deadline = time.monotonic() + 15
    while httpx.get(relay.base_url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_metrics_count_requests_agents_and_lease_latency(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory()
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant, "hq")
    with relay.portal(token) as portal, agent.transport() as transport:
        portal.submit(fake_envelope(tenant, "hq"))
        portal.submit(fake_envelope(tenant, "hq"))
        assert transport.lease(wait=1) is not None
    text = httpx.get(relay.base_url + "/metrics").text
    assert _metric(text, "writeback_relay_requests", state="queued") == 1
    assert _metric(text, "writeback_relay_requests", state="leased") == 1
    assert _metric(text, "writeback_relay_agents_online", tenant=tenant, group="hq") == 1
    assert _metric(text, "writeback_relay_lease_latency_seconds_count") == 1


def _cli(db: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "cloud.relay.cli", "--db", str(db), *args],
        capture_output=True, text=True, env=env, check=True, timeout=30,
    )
    return done.stdout


def test_agent_list_shows_version_heartbeat_and_directories(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agent = enroll_agent("hq")
    quiet = enroll_agent("branch")
    with agent.transport() as transport:
        transport.heartbeat(agent.heartbeat_body(version="2.0.1",
                                                 directories={"corp": True, "ldap": False}))
    table = _cli(relay.db_path, "agent", "list", "--tenant", tenant[0])
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["AGENT", "NAME", "GROUP", "VERSION"]
    row = next(line for line in lines if agent.agent_id in line)
    assert "2.0.1" in row and "yes" in row and "corp=up, ldap=down" in row
    assert any(quiet.agent_id in line and "never" in line for line in lines)
    listed = json.loads(_cli(relay.db_path, "agent", "list", "--tenant", tenant[0],
                             "--group", "hq", "--json"))
    assert [(a["agent_id"], a["version"], a["online"]) for a in listed] == [
        (agent.agent_id, "2.0.1", True)
    ]


def test_one_json_log_with_redaction(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(log_level="info", access_log=True)
    httpx.get(relay.base_url + "/healthz?token=SUPERSECRETVALUE")
    httpx.post(relay.base_url + "/v1/agents/enroll", content=b"{}")
    relay.stop()
    lines = [line for line in relay.log().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, uvicorn's too, is JSON
    loggers = {entry.get("logger") for entry in parsed}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers
    assert any("Started server process" in entry["event"] for entry in parsed)
    assert "SUPERSECRETVALUE" not in relay.log()
    assert any("/healthz?token=[redacted]" in entry["event"] for entry in parsed)


def test_openapi_says_who_may_call_and_what_submit_checks(relay: RelayProcess) -> None:
    doc = httpx.get(relay.base_url + "/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == {"agentSignature", "portalToken", "adminToken"}
    paths = doc["paths"]
    assert paths["/v1/agent/lease"]["post"]["security"] == [{"agentSignature": []}]
    assert paths["/v1/requests"]["post"]["security"] == [{"portalToken": []}]
    assert paths["/v1/admin/tenants"]["post"]["security"] == [{"adminToken": []}]
    assert "security" not in paths["/healthz"]["get"]
    assert "security" not in paths["/v1/agents/enroll"]["post"]
    assert {"400", "401", "429"} <= set(paths["/v1/requests"]["post"]["responses"])
    for batched in ("/v1/requests:batch", "/v1/requests/results:wait"):
        assert paths[batched]["post"]["security"] == [{"portalToken": []}]
        assert {"400", "401", "429"} <= set(paths[batched]["post"]["responses"])
    assert paths["/v1/agent/permits"]["post"]["security"] == [{"agentSignature": []}]
    header = paths["/v1/requests"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["header"]["properties"]
    assert header["id"]["pattern"] == "^[A-Za-z0-9_.:-]{1,128}$"
    assert header["tenant"]["maxLength"] == 128
    assert header["agent_group"]["minLength"] == 1
