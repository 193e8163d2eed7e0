"""Every op and every status that can be produced on purpose, end to end: portal SDK ->
real relay over HTTP -> real agent -> real Samba AD DC / slapd -> signed result the
portal verifies. What is asserted is what the portal and the user would see.
"""

from __future__ import annotations

import io
import json
import time

import pytest

from cloud.relay.client import DuplicateRequest, NoAgentOnline
from cloud.sdk import PortalSigner
from tests.e2e.conftest import Scenario
from tests.e2e.harness import journal_row
from tests.servers.base import BindOutcome, unique_login

INITIAL = "Initial-Pass-1"
NEW = "E2e-Fresh-Secret-42"


def _user(scenario: Scenario, **kwargs: object) -> str:
    login = unique_login("e")
    scenario.env.create_user(login, INITIAL, given_name="Casey", surname="Lindqvist", **kwargs)  # type: ignore[arg-type]
    time.sleep(1.0)  # requests issued in a later second than the password was set (see superseded)
    return login


# --------------------------------------------------------------------------- succeeded


def test_reset_succeeds_and_user_logs_in(scenario: Scenario) -> None:
    login = _user(scenario)
    result = scenario.system.portal.send("reset", f"WB\\{login}", new_password=NEW)
    assert result.status == "succeeded", result
    assert result.message == "Your password has been updated."
    assert result.dc in scenario.env.settings.urls
    assert scenario.env.bind(login, NEW) is BindOutcome.OK
    assert scenario.env.bind(login, INITIAL) is BindOutcome.INVALID_CREDENTIALS


def test_a_reset_logs_one_info_line_its_audit_line(
    scenario: Scenario, log_buffer: io.StringIO
) -> None:
    """Operators get one line per finished reset at info (the audit line with its
    outcome and duration); the rest of a request's lines are debug."""
    login = _user(scenario)
    request = scenario.system.portal.request("reset", login, new_password=NEW)
    scenario.system.portal.submit(request)
    assert scenario.system.portal.wait(request).status == "succeeded"
    lines = [json.loads(line) for line in log_buffer.getvalue().splitlines()
             if request.id in line and line.startswith("{")]
    above_debug = [line for line in lines if line.get("level") != "debug"]
    assert [line["event"] for line in above_debug] == ["request.succeeded"], above_debug
    (audit,) = above_debug
    assert (audit["status"], audit["op"], audit["user"]) == ("succeeded", "reset", login)
    assert audit["duration_ms"] > 0
    assert "request.received" in [line["event"] for line in lines]  # at debug


def test_reset_with_must_change(scenario: Scenario) -> None:
    login = _user(scenario)
    result = scenario.system.portal.send("reset", login, new_password=NEW, must_change=True)
    assert result.status == "succeeded", result
    assert scenario.env.bind(login, NEW) is BindOutcome.MUST_CHANGE


def test_change_succeeds_and_wrong_old_password_is_named(scenario: Scenario) -> None:
    login = _user(scenario)
    wrong = scenario.system.portal.send(
        "change", login, old_password="Not-It-1234", new_password=NEW
    )
    assert wrong.status == "wrong_old_password"
    assert wrong.message == "The current password is not correct."
    ok = scenario.system.portal.send("change", login, old_password=INITIAL, new_password=NEW)
    assert ok.status == "succeeded", ok
    assert scenario.env.bind(login, NEW) is BindOutcome.OK


def test_locked_account_unlock_and_reset_with_unlock(scenario: Scenario) -> None:
    login = _user(scenario)
    scenario.env.lock(login)
    locked = scenario.system.portal.send("reset", login, new_password=NEW)
    assert locked.status == "account_locked"
    unlocked = scenario.system.portal.send("unlock", login)
    assert unlocked.status == "succeeded", unlocked
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK

    other = _user(scenario)
    scenario.env.lock(other)
    result = scenario.system.portal.send("reset", other, new_password=NEW, unlock=True)
    assert result.status == "succeeded", result
    assert scenario.env.bind(other, NEW) is BindOutcome.OK


def test_preflight_reports_the_policy(scenario: Scenario) -> None:
    login = _user(scenario)
    result = scenario.system.portal.send("preflight", login)
    assert result.status == "succeeded", result
    assert result.policy is not None
    assert result.policy["min_length"] == 8
    assert result.policy["complexity"] is True
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK  # nothing written


# --------------------------------------------------------------------------- not_managed


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [("OFF", "writeback_disabled"), ("ALLOW", "not_in_allowed_group"), ("NOWHERE", "no_directory")],
)
def test_not_managed_by_configuration(scenario: Scenario, prefix: str, reason: str) -> None:
    login = _user(scenario)
    result = scenario.system.portal.send("reset", f"{prefix}\\{login}", new_password=NEW)
    assert result.status == "not_managed"
    assert result.reason == reason
    assert "managed by your administrator" in result.message
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK


def test_allowed_group_member_is_managed(scenario: Scenario) -> None:
    login = _user(scenario)
    dn = scenario.env.create_group(f"allowed-sub-{login}", [_dn(scenario, login)])
    _add_member(scenario, scenario.allowed_group, dn)  # nested: user -> sub group -> allowed
    result = scenario.system.portal.send("reset", f"ALLOW\\{login}", new_password=NEW)
    assert result.status == "succeeded", result


def test_not_managed_outside_scope(scenario: Scenario) -> None:
    login = _user(scenario, outside_base=True)
    result = scenario.system.portal.send("reset", login, new_password=NEW)
    assert (result.status, result.reason) == ("not_managed", "outside_scope")


def test_a_reset_refused_before_its_permit_is_journaled_as_no_write(scenario: Scenario) -> None:
    """The journal's synced "writing" mark starts as soon as a reset is claimed, so its
    fsync runs during the lookup; a reset refused before its write permit must still
    be recorded as answered without a write: done, with no permit's lease (a row with
    one reads "written under a permit" to a restarted agent)."""
    login = _user(scenario, outside_base=True)
    portal = scenario.system.portal
    request = portal.request("reset", login, new_password=NEW)
    portal.submit(request)
    result = portal.wait(request)
    assert (result.status, result.reason) == ("not_managed", "outside_scope")
    assert journal_row(scenario.system.config, request.id) == ("done", None)
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK


def test_not_managed_in_nested_denied_group(scenario: Scenario) -> None:
    login = _user(scenario)
    _add_member(scenario, scenario.denied_inner_group, _dn(scenario, login))
    result = scenario.system.portal.send("reset", login, new_password=NEW)
    assert (result.status, result.reason) == ("not_managed", "in_denied_group")


def test_not_managed_protected_admin(scenario: Scenario) -> None:
    login = _user(scenario, protected=True)
    preflight = scenario.system.portal.send("preflight", login)
    assert (preflight.status, preflight.reason) == ("not_managed", "protected_account")
    result = scenario.system.portal.send("reset", login, new_password=NEW)
    assert (result.status, result.reason) == ("not_managed", "protected_account")
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK


# --------------------------------------------------------------------------- failures


def test_user_not_found_and_ambiguous(scenario: Scenario) -> None:
    missing = scenario.system.portal.send("reset", "nobody-" + unique_login(), new_password=NEW)
    assert missing.status == "user_not_found"
    shared = f"dup-{unique_login()}@mail.wb.test"
    scenario.env.create_user(unique_login(), INITIAL, mail=shared)
    scenario.env.create_user(unique_login(), INITIAL, mail=shared)
    ambiguous = scenario.system.portal.send("reset", shared, user_kind="upn", new_password=NEW)
    assert ambiguous.status == "ambiguous_user"
    assert ambiguous.message == missing.message  # the portal must not reveal which


def test_hostile_user_name_finds_nobody(scenario: Scenario) -> None:
    _user(scenario)
    result = scenario.system.portal.send("reset", "*)(uid=*", new_password=NEW)
    assert result.status == "user_not_found"


@pytest.mark.parametrize(
    ("password", "reason"), [("Ab1-x", "too_short"), ("alllowercaseletters", "complexity")]
)
def test_policy_violation_names_the_rule(scenario: Scenario, password: str, reason: str) -> None:
    login = _user(scenario)
    result = scenario.system.portal.send("reset", login, new_password=password)
    assert (result.status, result.reason) == ("policy_violation", reason)
    assert result.policy is not None and result.policy["min_length"] == 8
    assert result.message != "The new password does not meet the password policy."  # specific
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK


def test_policy_violation_history(scenario: Scenario) -> None:
    login = _user(scenario)
    assert (
        scenario.system.portal.send("change", login, old_password=INITIAL, new_password=NEW).status
        == "succeeded"
    )
    result = scenario.system.portal.send("change", login, old_password=NEW, new_password=INITIAL)
    assert (result.status, result.reason) == ("policy_violation", "history")


def test_account_disabled(scenario: Scenario) -> None:
    login = _user(scenario, disabled=True)
    result = scenario.system.portal.send("reset", login, new_password=NEW)
    assert result.status == "account_disabled"


def test_access_denied_for_service_account_without_rights(scenario: Scenario) -> None:
    login = _user(scenario)
    result = scenario.system.portal.send("reset", f"LIMITED\\{login}", new_password=NEW)
    assert result.status == "access_denied"
    assert "configuration" in result.message
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK


def test_directory_unavailable(scenario: Scenario) -> None:
    started = time.monotonic()
    result = scenario.system.portal.send("reset", "DEAD\\someone", new_password=NEW)
    assert result.status == "directory_unavailable"
    assert time.monotonic() - started < 20  # bounded by directory_deadline_seconds, not the lease


def test_rejected_untrusted_portal_key(scenario: Scenario) -> None:
    login = _user(scenario)
    portal = scenario.system.portal
    request = portal.request("reset", login, new_password=NEW, signer=PortalSigner.generate())
    portal.submit(request)
    result = portal.wait(request)
    assert (result.status, result.reason) == ("rejected", "unknown_key")
    assert scenario.env.bind(login, INITIAL) is BindOutcome.OK


def test_rejected_audit_line_has_every_field(scenario: Scenario, log_buffer: io.StringIO) -> None:
    """docs/errors.md: every audit line carries the same fields (issue 7 defect 2)."""
    login = _user(scenario)
    portal = scenario.system.portal
    request = portal.request("reset", login, new_password=NEW, signer=PortalSigner.generate())
    portal.submit(request)
    assert portal.wait(request).status == "rejected"
    lines = [
        json.loads(line)
        for line in log_buffer.getvalue().splitlines()
        if '"request.rejected"' in line and request.id in line
    ]
    assert lines, "no request.rejected line"
    line = lines[-1]
    for key in (
        "event_id",
        "request_id",
        "op",
        "user",
        "status",
        "reason",
        "dc",
        "directory",
        "detail",
        "duration_ms",
    ):
        assert key in line, (key, line)
    assert (line["status"], line["op"], line["user"]) == ("rejected", "reset", login)


def test_relay_refuses_a_replayed_envelope(scenario: Scenario) -> None:
    login = _user(scenario)
    portal = scenario.system.portal
    request = portal.request("reset", login, new_password=NEW)
    portal.submit(request)
    assert portal.wait(request).status == "succeeded"
    with pytest.raises(DuplicateRequest):
        portal.submit(request)


def test_no_agent_online_is_answered_at_once(scenario: Scenario) -> None:
    portal = scenario.system.portal
    request = portal.request("preflight", "anyone")
    # A group nobody enrolled in: the relay must not queue it.
    from cloud.sdk import build_request

    lonely = build_request(
        portal.signer,
        tenant=portal.tenant,
        agent_group="nobody-here",
        agents=[],
        op="preflight",
        user_kind="login",
        user_value="anyone",
    )
    started = time.monotonic()
    with pytest.raises(NoAgentOnline):
        portal.client.submit(lonely.to_bytes())
    assert time.monotonic() - started < 2
    assert request.id  # the normal group is still served (other tests)


# --------------------------------------------------------------------------- helpers


def _dn(scenario: Scenario, login: str) -> str:
    from connectors.base import LookupKind, UserQuery

    connector = scenario.env.connector()
    try:
        return connector.find_user(UserQuery(LookupKind.LOGIN, login)).dn
    finally:
        connector.close()


def _add_member(scenario: Scenario, group_dn: str, member_dn: str) -> None:
    scenario.env.add_member(group_dn, member_dn)
