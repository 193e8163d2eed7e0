"""The operator's commands: `check` reads like a checklist and fails loudly, `status`
tells what is going on, bad input gets one clear line, and both sides rotate keys
without losing a request in flight."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tomli_w

from cloud.sdk import rotate_portal_key
from tests.e2e.harness import AgentSystem, cli, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess


@pytest.fixture
def system(relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path) -> AgentSystem:
    created = AgentSystem.create(
        tmp_path / "agent", relay, [directory_entry(slapd_env.settings, tmp_path, name="ldap", default=True)]
    )
    yield created
    created.close()


def test_check_passes_then_names_what_is_broken(
    system: AgentSystem, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli("-c", str(system.config), "check") == 0
    out = capsys.readouterr().out
    assert "[ok  ] relay" in out and "[ok  ] directory ldap: service_bind" in out
    assert "all checks passed" in out

    (tmp_path / "ldap.bindpw").write_text("not-the-password")  # the service account's file
    assert cli("-c", str(system.config), "check") == 1
    out = capsys.readouterr().out
    assert "[FAIL] directory ldap" in out
    assert "not-the-password" not in out
    assert "1 check(s) failed" in out or "check(s) failed" in out


def test_status_reports_enrollment_and_journal(system: AgentSystem, slapd_env: DirectoryEnv,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    login = unique_login("c")
    slapd_env.create_user(login, "Initial-Pass-1")
    time.sleep(1)
    with system.running():
        assert system.portal.send("reset", login, new_password="Status-Pass-11").status == "succeeded"
        assert cli("-c", str(system.config), "status") == 0
        status = json.loads(capsys.readouterr().out)
    assert status["enrollment"]["tenant"] == system.portal.tenant
    assert status["journal"] == {"done": 1}
    assert status["running"] is True and status["ready"] is True


def test_bad_input_gets_one_clear_line(
    system: AgentSystem, relay: RelayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a code used twice
    code = relay.enrollment_code(system.portal.tenant, "default")
    assert cli("-c", str(system.config), "enroll", "--code", code) == 0
    capsys.readouterr()
    assert cli("-c", str(system.config), "enroll", "--code", code) == 2
    err = capsys.readouterr().err
    assert "enrollment failed" in err and "enrollment_code_used" in err
    assert code not in err

    # a configuration error names the key
    bad = tmp_path / "bad.toml"
    bad.write_text(tomli_w.dumps({"workers": 0, "data_dir": str(tmp_path)}))
    assert cli("-c", str(bad), "check") == 2
    assert "workers" in capsys.readouterr().err

    # a missing file says what to do
    assert cli("-c", str(tmp_path / "nope.toml"), "status") == 2
    assert "writeback-agent init" in capsys.readouterr().err


def test_agent_key_rotation_keeps_queued_requests_working(
    system: AgentSystem, slapd_env: DirectoryEnv
) -> None:
    first, second = unique_login("k"), unique_login("k")
    for login in (first, second):
        slapd_env.create_user(login, "Initial-Pass-1")
    time.sleep(1)
    old_kid = system.portal.agents()[0].kem_kid
    sealed_to_old = system.portal.request("reset", first, new_password="Old-Key-Pass-21")

    assert cli("-c", str(system.config), "keys", "rotate", "--overlap", "3600") == 0
    new_kid = system.portal.agents()[0].kem_kid
    assert new_kid != old_kid

    with system.running():
        system.portal.submit(sealed_to_old)
        assert system.portal.wait(sealed_to_old).status == "succeeded"  # overlap: old key still opens
        after = system.portal.send("reset", second, new_password="New-Key-Pass-22")
        assert after.status == "succeeded"
    assert slapd_env.bind(first, "Old-Key-Pass-21") is BindOutcome.OK
    assert slapd_env.bind(second, "New-Key-Pass-22") is BindOutcome.OK


def test_portal_key_rotation_is_picked_up_from_the_relay(
    system: AgentSystem, relay: RelayProcess, slapd_env: DirectoryEnv
) -> None:
    login = unique_login("p")
    slapd_env.create_user(login, "Initial-Pass-1")
    time.sleep(1)
    rotation = rotate_portal_key(system.portal.signer, overlap=3600)
    for entry in rotation.keyring_entries:
        relay.add_portal_key(system.portal.tenant, entry.kid, entry.key,
                             **{k: v for k, v in (("not_before", entry.not_before), ("not_after", entry.not_after)) if v is not None})
    with system.running():
        assert system.agent is not None
        system.agent.service.check_key_expiry()  # the periodic job, now
        result = system.portal.send("reset", login, new_password="Rotated-Portal-33", signer=rotation.signer)
    assert result.status == "succeeded", result
    assert slapd_env.bind(login, "Rotated-Portal-33") is BindOutcome.OK
