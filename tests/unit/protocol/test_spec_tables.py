"""docs/protocol.md and the code agree on every list the spec writes out.

The spec lists statuses, reasons, ops and messages in tables marked with
``<!-- table: name -->``; these tests read them and compare them with wire.status
and wire.messages, so a status or reason added to the code without the spec (or the
other way round) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest

from wire.messages import OPS_WITH_SECRET, SECRET_FIELDS, Op
from wire.status import (
    POLICY_MESSAGES,
    USER_MESSAGES,
    CredentialReason,
    NotManagedReason,
    PolicyReason,
    RejectReason,
    Status,
)

ROOT = Path(__file__).resolve().parents[3]
SPEC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")


def table(name: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule dropped) of the table after the marker."""
    marker = f"<!-- table: {name} -->"
    assert SPEC.count(marker) == 1, f"spec has no single table {name!r}"
    lines = SPEC.split(marker, 1)[1].lstrip("\n").splitlines()
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"table {name!r} is empty"
    return rows[2:]


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected a `value` cell, got {cell!r}"
    return match.group(1)


def column(name: str, index: int = 0) -> list[str]:
    return [code(row[index]) for row in table(name)]


def test_statuses_and_their_default_messages() -> None:
    rows = table("statuses")
    assert [code(r[0]) for r in rows] == [s.value for s in Status]
    for row in rows:
        assert row[2] == USER_MESSAGES[Status(code(row[0]))], row[0]


def test_policy_reasons_and_their_messages() -> None:
    rows = table("policy_reasons")
    assert [code(r[0]) for r in rows] == [r.value for r in PolicyReason]
    for row in rows:
        assert row[1] == POLICY_MESSAGES[PolicyReason(code(row[0]))], row[0]


@pytest.mark.parametrize(
    ("name", "enum"),
    [
        ("not_managed_reasons", NotManagedReason),
        ("credential_reasons", CredentialReason),
        ("reject_reasons", RejectReason),
    ],
)
def test_reason_tables(name: str, enum: type[NotManagedReason]) -> None:
    assert sorted(column(name)) == sorted(r.value for r in enum)


def test_ops_and_what_each_carries() -> None:
    rows = table("ops")
    assert sorted(code(r[0]) for r in rows) == sorted(get_args(Op))
    for row in rows:
        op = code(row[0])
        assert (row[1] == "at least one entry") == (op in OPS_WITH_SECRET), op
        if op in OPS_WITH_SECRET:
            strings = {
                member for member, cell in (("new_password", row[2]), ("old_password", row[3]))
                if cell == "string"
            }  # fmt: skip
            assert strings == SECRET_FIELDS[op], op
            assert {row[2], row[3]} <= {"string", "null"}, op


def test_result_check_reasons_are_exactly_those_the_vectors_produce() -> None:
    in_spec = {code(row[2]) for row in table("result_reject_reasons")}
    result = json.loads((ROOT / "docs" / "test-vectors" / "result.json").read_text("utf-8"))
    assert in_spec == {case["reason"] for case in result["rejections"]}


def test_request_check_order_matches_the_vectors() -> None:
    # Every reason of the verification table has a rejection vector, and the other way.
    section = SPEC.split("## 6. Agent verification", 1)[1].split("\n## ", 1)[0]
    in_spec = set(re.findall(r"\| `([a-z_]+)` \|\n", section))
    doc = json.loads((ROOT / "docs" / "test-vectors" / "rejections.json").read_text("utf-8"))
    assert in_spec - {"replayed"} == {case["reason"] for case in doc["cases"]}


def test_the_spec_stands_on_its_own() -> None:
    # No pointers into the implementation or the design notes.
    for pattern in (
        r"\bwire[./]",
        r"\.py\b",
        r"DESIGN",
        r"\bcloud[./]",
        r"(?<![-\w])(?<!/v1/)agent/",  # the relay's /v1/agent/... routes are wire
        r"tests/",
    ):
        assert not re.search(pattern, SPEC), pattern


def _route(cell: str) -> tuple[str, str]:
    method, target = code(cell).split(" ", 1)
    path = re.sub(r"\{[^}]+\}", "{}", target.split("?", 1)[0])
    return method, path


def test_the_relay_routes_are_those_the_relay_serves() -> None:
    from fastapi.routing import APIRoute

    from cloud.relay.routes_agent import router as agent_router
    from cloud.relay.routes_portal import router as portal_router

    served = {
        (method, re.sub(r"\{[^}]+\}", "{}", route.path))
        for route in [*agent_router.routes, *portal_router.routes]
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert sorted(_route(row[0]) for row in table("routes")) == sorted(served)


def test_permit_decisions_are_those_of_the_relay_and_the_agent() -> None:
    # A decision added to the code (or the spec) alone fails here: write its row in
    # the permit_decisions table of section 12.3, saying what the agent does with it.
    from cloud.relay.models import PermitAnswer
    from wire.permits import PermitDecision  # the relay's stores and the agent share it

    in_spec = column("permit_decisions")
    assert sorted(in_spec) == sorted(d.value for d in PermitDecision)
    described = PermitAnswer.model_fields["decision"].description or ""
    assert sorted(in_spec) == sorted(described.replace(" ", "").split("|"))


def test_the_states_a_portal_waits_on_are_those_of_the_relay() -> None:
    from cloud.relay.store import RequestState

    section = SPEC.split("### 12.5 ", 1)[1]
    named = set(re.findall(r"`([a-z_]+)`", section.split("It counts", 1)[0]))
    assert {s.value for s in RequestState} | {"unknown"} <= named


def test_the_policy_members_are_those_the_agent_sends() -> None:
    import datetime as dt

    from connectors.base import PasswordPolicy

    types = {"integer": int, "boolean": bool, "null": type(None)}
    rows = {code(row[0]): row[1] for row in table("policy_members")}
    for policy in (PasswordPolicy(), PasswordPolicy(max_length=127, max_age=dt.timedelta(days=9))):
        sent = policy.describe()
        assert sorted(rows) == sorted(sent)
        for name, value in sent.items():
            allowed = tuple(types[t] for t in re.findall(r"integer|boolean|null", rows[name]))
            assert type(value) in allowed, (name, value)


def test_every_section_the_spec_refers_to_exists() -> None:
    heads = set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", SPEC, re.MULTILINE))
    refs = re.findall(r"(?<!RFC \d{4}\s)sections? (\d+(?:\.\d+)*)", SPEC)
    refs += re.findall(r"\((\d+\.\d+)[,)]", SPEC)
    refs += re.findall(r"sections \d+(?:\.\d+)*(?:, \d+(?:\.\d+)*)* and (\d+(?:\.\d+)*)", SPEC)
    assert refs and sorted(set(refs) - heads) == []
