"""No password in any log line: the agents' (in-process, at debug level, with ldap3's
logging at the most it is allowed), the relay's and the agent subprocesses' logs.

Named to run after the other e2e modules so it also reads what they logged; it runs
its own flows first so it never passes on an empty log.
"""

from __future__ import annotations

import io

import pytest

from tests.e2e import test_flows, test_resilience
from tests.e2e.conftest import Scenario
from tests.servers.base import unique_login
from tests.servers.relay import RelayProcess

OWN = ["Logged-Never-Pass-31", "Also-Never-Logged-32", "short1", "Wrong-Old-Never-33"]


def test_no_password_in_any_log_line(
    scenario: Scenario,
    log_buffer: io.StringIO,
    relay: RelayProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import ldap3.utils.log as ldap3_log

    ldap3_log.set_library_log_detail_level(ldap3_log.EXTENDED)  # ask for everything
    login = unique_login("s")
    scenario.env.create_user(login, OWN[0])
    portal = scenario.system.portal
    import time

    time.sleep(1.0)
    statuses = [
        portal.send("reset", login, new_password=OWN[1]).status,
        portal.send("reset", login, new_password=OWN[2]).status,
        portal.send("change", login, old_password=OWN[3], new_password=OWN[0]).status,
        portal.send("change", login, old_password=OWN[1], new_password=OWN[0] + "x").status,
    ]
    assert statuses == ["succeeded", "policy_violation", "wrong_old_password", "succeeded"]

    passwords = [
        *OWN,
        OWN[0] + "x",
        test_flows.INITIAL,
        test_flows.NEW,
        "Not-It-1234",
        "Ab1-x",
        "alllowercaseletters",
        test_resilience.INITIAL,
        test_resilience.REPLAYED,
        test_resilience.THIRD,
        test_resilience.CRASH,
        test_resilience.OUTAGE,
        "Before-Term-Pass-1",
    ]
    texts = {"agents (in-process)": log_buffer.getvalue(), "relay": relay.log()}
    for path in tmp_path_factory.getbasetemp().rglob("*.log"):
        texts[str(path)] = path.read_text(errors="replace")
    assert texts["agents (in-process)"].count('"request.') >= 4  # the flows really were logged
    for where, text in texts.items():
        for line in text.splitlines():
            for password in passwords:
                assert password not in line, f"password found in {where}: {line[:300]}"
