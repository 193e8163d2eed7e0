"""An OpenLDAP reset is two writes (the Password Modify exop, then pwdReset/unlock).
When the second cannot be made, the portal is told the truth: the password WAS set
(partially_applied, with what was not applied), not "Something went wrong" for a
password that works. The fault is real: slapd's ACL refuses the follow-up modify for
users named nofollow* (tests/servers/slapd.py)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Scenario
from tests.servers.base import BindOutcome, unique_login

INITIAL = "Initial-Pass-1"
NEW = "E2e-Fresh-Secret-42"


@pytest.mark.parametrize("scenario", ["openldap"], indirect=True)
def test_follow_up_refused_is_answered_partially_applied(scenario: Scenario) -> None:
    login = unique_login("nofollow")
    scenario.env.create_user(login, INITIAL, given_name="Casey", surname="Lindqvist")
    time.sleep(1.0)  # a later second than the password was set (see superseded)
    result = scenario.system.portal.send("reset", login, new_password=NEW, must_change=True)
    assert result.status == "partially_applied", result
    assert "WAS set" in result.detail and "must_change" in result.detail
    assert NEW not in result.detail
    assert scenario.env.bind(login, NEW) is BindOutcome.OK  # as the answer says
