"""The permit scenarios published for second implementations (docs/test-vectors/
relay.json, `permit_scenarios`, written from docs/protocol.md section 12.3) hold for
every store back end: a relay whose decisions differ from the spec fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud.relay.store import LeaseLost, RelayStore

VECTORS = Path(__file__).resolve().parents[3] / "docs" / "test-vectors" / "relay.json"
DOC = json.loads(VECTORS.read_text(encoding="utf-8"))["permit_scenarios"]
T0 = 1_800_000_000.0


def _setup(store: RelayStore) -> None:
    store.add_tenant("t1", "hash-t1", T0)
    for n, agent_id in enumerate(("a1", "a2", "a3")):
        code = f"code-{agent_id}"
        store.add_enrollment_code(code, "t1", "g", T0 + 600, T0)
        store.enroll(code, agent_id, f"name-{n}", {"sign_key": "k"}, "k", now=T0)


def _run(store: RelayStore, step: dict[str, Any]) -> str | None:
    now, lease_time = T0 + step["at"], float(DOC["lease_seconds"])
    if step["do"] == "submit":
        exp = T0 + DOC["request_lifetime"]
        store.add_request("t1", step["request"], "g", exp, b"{}", now=now)
        return None
    if step["do"] == "lease":
        grant = store.lease(
            "t1", "g", step["agent"], step["lease"], now=now, lease_timeout=lease_time
        )
        return None if grant is None else grant.request_id
    if step["do"] == "release":
        store.release(step["lease"], step["agent"])
        return None
    try:
        if step["do"] == "ask":
            return store.permit(
                step["lease"],
                step["agent"],
                step["user_key"],
                ordered=step["ordered"],
                now=now,
                lease_timeout=lease_time,
                marker=step["marker"],
                late_answer_grace=float(DOC["late_answer_grace"]),
            ).decision.value
        store.complete(step["lease"], step["request"], step["agent"], b"result", now)
        return "stored"
    except LeaseLost:
        return "lease_lost"


@pytest.mark.parametrize("scenario", DOC["scenarios"], ids=lambda s: s["name"])
def test_permit_scenario(store: RelayStore, scenario: dict[str, Any]) -> None:
    _setup(store)
    for number, step in enumerate(scenario["steps"]):
        got = _run(store, step)
        assert got == step.get("want"), f"step {number}: {step}"
