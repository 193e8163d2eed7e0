"""The agent batch routes as docs/protocol.md section 12 writes their bodies, over
HTTP against a running relay, with hand-built signed calls (12.1): what an agent in
another language sends and gets back."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from agent.transports.relay import authorization_header
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope

ALICE = hashlib.sha256(b"alice, batch wire").hexdigest()


def _post(relay: RelayProcess, agent: EnrolledAgent, path: str, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    header = authorization_header(agent.signing_key, agent.agent_id, "POST", path.encode(), raw)
    answer = httpx.post(
        relay.base_url + path,
        content=raw,
        headers={"Authorization": header, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_permit_and_result_batches_answer_item_by_item(relay: RelayProcess) -> None:
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with relay.portal(token) as portal, agent.transport() as transport:
        ids = [portal.submit(fake_envelope(tenant)) for _ in range(2)]
        leases = [transport.lease(wait=5) for _ in ids]
    assert all(lease is not None for lease in leases)
    first, second = (lease.lease_id for lease in leases if lease is not None)

    def ask(lease_id: str) -> dict[str, Any]:
        return {"lease_id": lease_id, "user_key": ALICE, "ordered": True, "marker": None}

    answers = _post(
        relay, agent, "/v1/agent/permits", {"permits": [ask(first), ask(second), ask("lse_x")]}
    )["answers"]
    # Two permits for one user in one batch: as two single calls in that order.
    assert [a["decision"] for a in answers] == ["granted", "busy", None]
    assert [a["lease_id"] for a in answers] == [first, second, "lse_x"]
    assert [a["error"] for a in answers] == [None, None, "lease_lost"]
    for answer in answers[:2]:
        assert 0 < answer["lease_seconds"] <= 30 and answer["lease_expires_at"] > 1.7e9

    result = json.dumps({"result": {"status": "succeeded"}, "sig": {}})
    by_lease = dict(
        zip((first, second), (lease.request_id for lease in leases if lease), strict=True)
    )
    items = [
        {"lease_id": first, "request_id": by_lease[first], "result": result},
        {"lease_id": "lse_x", "request_id": by_lease[second], "result": result},
        {"lease_id": second, "request_id": by_lease[second], "result": "[1]"},
    ]
    outcomes = _post(relay, agent, "/v1/agent/results/batch", {"results": items})["outcomes"]
    assert outcomes == [
        {"request_id": by_lease[first], "outcome": "stored"},
        {"request_id": by_lease[second], "outcome": "lease_lost"},
        {"request_id": by_lease[second], "outcome": "malformed_result"},
    ]
    # The same agent's re-post of a stored result is stored again, not refused.
    again = _post(relay, agent, "/v1/agent/results/batch", {"results": items[:1]})["outcomes"]
    assert again == [{"request_id": by_lease[first], "outcome": "stored"}]
