"""Op authenticate end to end (portal SDK -> relay -> agent -> a bind as the user):
the answers the portal's sign-in page turns into what a person sees."""

from __future__ import annotations

from tests.e2e.conftest import Scenario
from tests.servers.base import unique_login

INITIAL = "Initial-Pass-1"


def _user(scenario: Scenario, **kwargs: object) -> str:
    login = unique_login("t")
    scenario.env.create_user(login, INITIAL, given_name="Tove", surname="Ekman", **kwargs)  # type: ignore[arg-type]
    return login


def test_authenticate_answers_succeeded_or_invalid_credentials(scenario: Scenario) -> None:
    login = _user(scenario)
    portal = scenario.system.portal
    ok = portal.send("authenticate", f"WB\\{login}", old_password=INITIAL)
    assert ok.status == "succeeded", ok
    bad = portal.send("authenticate", f"WB\\{login}", old_password="Wrong-Pass-3")
    assert bad.status == "invalid_credentials", bad
    assert bad.message == "The user name or password is not correct."
    assert INITIAL not in bad.detail and "Wrong-Pass-3" not in bad.detail


def test_authenticate_locked_after_threshold_and_scope_first(scenario: Scenario) -> None:
    login = _user(scenario)
    portal = scenario.system.portal
    for _ in range(3):
        portal.send("authenticate", f"WB\\{login}", old_password="Wrong-Pass-3")
    locked = portal.send("authenticate", f"WB\\{login}", old_password=INITIAL)
    assert locked.status == "account_locked", locked
    outside = _user(scenario, outside_base=True)
    outside_answer = portal.send("authenticate", f"WB\\{outside}", old_password=INITIAL)
    assert outside_answer.status == "not_managed"
    missing = portal.send("authenticate", "WB\\nobody-" + login, old_password=INITIAL)
    assert missing.status == "user_not_found"  # the portal shows it as invalid_credentials
