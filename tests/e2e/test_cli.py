"""The operator's commands: `check` reads like a checklist and fails loudly, `status`
tells what is going on, bad input gets one clear line, and both sides rotate keys
without losing a request in flight."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from cloud.sdk import rotate_portal_key
from tests.e2e.harness import AgentSystem, cli, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess, start_relay


@pytest.fixture
def system(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path
) -> Iterator[AgentSystem]:
    created = AgentSystem.create(
        tmp_path / "agent",
        relay,
        [directory_entry(slapd_env.settings, tmp_path, name="ldap", default=True)],
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
        result = system.portal.send("reset", login, new_password="Status-Pass-11")
        assert result.status == "succeeded"
        assert cli("-c", str(system.config), "status") == 0
        status = json.loads(capsys.readouterr().out)
    assert status["enrollment"]["tenant"] == system.portal.tenant
    assert status["journal"] == {"done": 1}
    assert (status["running"], status["ready"]) == (True, True)
    assert cli("-c", str(system.config), "status") == 1  # stopped now
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert status["running"] is True and status["ready"] is True
    # every file the agent keeps is 0600 in a 0700 tree (the journal holds user names)
    data = system.root / "data"
    modes = {str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode) for p in data.rglob("*")}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert "journal.sqlite3" in modes and "keys/signing.key" in modes
    assert {m for name, m in modes.items() if not (data / name).is_dir()} == {0o600}, modes
    assert {m for name, m in modes.items() if (data / name).is_dir()} == {0o700}, modes


def test_bad_input_gets_one_clear_line(
    system: AgentSystem, relay: RelayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # enrolling an enrolled agent again: refused before the code is used up
    code = relay.enrollment_code(system.portal.tenant, "default")
    capsys.readouterr()
    assert cli("-c", str(system.config), "enroll", "--code", code) == 2
    err = capsys.readouterr().err
    assert "already enrolled as agent" in err and "enroll --force" in err
    # a code used twice
    assert cli("-c", str(system.config), "enroll", "--force", "--code", code) == 0
    capsys.readouterr()
    assert cli("-c", str(system.config), "enroll", "--force", "--code", code) == 2
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
        # the overlap: the old key still opens
        assert system.portal.wait(sealed_to_old).status == "succeeded"
        after = system.portal.send("reset", second, new_password="New-Key-Pass-22")
        assert after.status == "succeeded"
    assert slapd_env.bind(first, "Old-Key-Pass-21") is BindOutcome.OK
    assert slapd_env.bind(second, "New-Key-Pass-22") is BindOutcome.OK


def test_a_rotated_out_key_leaves_memory_and_disk_after_its_overlap(
    system: AgentSystem, slapd_env: DirectoryEnv
) -> None:
    login = unique_login("k")
    slapd_env.create_user(login, "Initial-Pass-1")
    assert cli("-c", str(system.config), "keys", "rotate", "--overlap", "1") == 0
    previous = system.settings().keys_dir / "kem.previous.key"
    assert previous.exists()
    time.sleep(2.1)  # past the overlap window
    with system.running():
        assert system.agent is not None
        service = system.agent.service
        service.check_key_expiry()  # the periodic job, now
        assert not previous.exists()
        assert service._verifier is not None
        assert service._verifier.agent_keys.previous_kem is None
        metrics = system.agent.metrics
        seen: list[str] = []
        counting = metrics.in_flight

        @contextlib.contextmanager
        def spy() -> Iterator[None]:
            with counting():
                seen.append(metrics.render()[0].decode())
                yield

        metrics.in_flight = spy  # type: ignore[method-assign]
        result = system.portal.send("reset", login, new_password="Pruned-Key-Pass-5")
        after = metrics.render()[0].decode()
    assert result.status == "succeeded", result
    assert slapd_env.bind(login, "Pruned-Key-Pass-5") is BindOutcome.OK
    # the request was counted in flight while it ran, and not after
    assert len(seen) == 1 and "writeback_in_flight 1.0" in seen[0]
    assert "writeback_in_flight 0.0" in after


def test_portal_key_rotation_is_picked_up_from_the_relay(
    system: AgentSystem, relay: RelayProcess, slapd_env: DirectoryEnv
) -> None:
    login = unique_login("p")
    slapd_env.create_user(login, "Initial-Pass-1")
    time.sleep(1)
    rotation = rotate_portal_key(system.portal.signer, overlap=3600)
    for entry in rotation.keyring_entries:
        relay.add_portal_key(system.portal.tenant, entry.kid, entry.key,
                             **{k: v for k, v in (("not_before", entry.not_before),
                                                  ("not_after", entry.not_after)) if v is not None})
    with system.running():
        assert system.agent is not None
        system.agent.service.check_key_expiry()  # the periodic job, now
        result = system.portal.send(
            "reset", login, new_password="Rotated-Portal-33", signer=rotation.signer
        )
    assert result.status == "succeeded", result
    assert slapd_env.bind(login, "Rotated-Portal-33") is BindOutcome.OK


def test_live_key_rotation_loses_no_request(system: AgentSystem, slapd_env: DirectoryEnv) -> None:
    """`keys rotate` while the agent runs and a portal keeps sending: the running agent
    picks the new key up from disk (no restart, no SIGHUP) and no request is rejected,
    neither those sealed to the old key nor the first ones sealed to the new one."""
    users = [unique_login("r") for _ in range(3)]
    queued_user, first_new_user = unique_login("q"), unique_login("n")
    for login in [*users, queued_user, first_new_user]:
        slapd_env.create_user(login, "Initial-Pass-1")
    time.sleep(1)
    old_kid = system.portal.agents()[0].kem_kid
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def portal_loop() -> None:
        n = 0
        try:
            while not stop.is_set():
                login = users[n % len(users)]
                n += 1
                request = system.portal.request("reset", login, new_password=f"Rotate-Pass-{n:04d}")
                system.portal.submit(request)
                result = system.portal.wait(request, timeout=30)
                results.append((result.status, next(iter(request.envelope.sealed))))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    with system.running():
        sealed_to_old = system.portal.request("reset", queued_user, new_password="Queued-Old-Key-9")
        thread = threading.Thread(target=portal_loop)
        thread.start()
        time.sleep(1.5)
        assert cli("-c", str(system.config), "keys", "rotate", "--overlap", "3600") == 0
        new_kid = system.portal.agents()[0].kem_kid
        assert new_kid != old_kid
        first_new = system.portal.send("reset", first_new_user, new_password="First-New-Key-1")
        time.sleep(1.5)
        stop.set()
        thread.join(60)
        system.portal.submit(sealed_to_old)  # queued before the rotation, delivered after
        queued = system.portal.wait(sealed_to_old)
    assert not errors, errors
    assert first_new.status == "succeeded", first_new
    assert queued.status == "succeeded", queued
    assert len(results) >= 2 and {status for status, _ in results} == {"succeeded"}, results
    assert {kid for _, kid in results} == {old_kid, new_kid}, "requests on both sides of it"
    assert slapd_env.bind(first_new_user, "First-New-Key-1") is BindOutcome.OK
    assert slapd_env.bind(queued_user, "Queued-Old-Key-9") is BindOutcome.OK


def test_sighup_reloads_keys(system: AgentSystem) -> None:
    with system.running():
        assert system.agent is not None
        assert system.agent.reload_keys() is True
        (system.root / "data" / "portal_keys.json").chmod(0o666)
        assert system.agent.reload_keys() is False  # refused: others could have written it


def test_enroll_reads_the_code_from_stdin_or_a_file(
    relay: RelayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant, _token = relay.create_tenant()
    for how in ("stdin", "file"):
        config = tmp_path / how / "agent.toml"
        config.parent.mkdir()
        assert cli("-c", str(config), "init", "--data-dir", str(tmp_path / how / "data"),
                   "--relay-url", relay.base_url) == 0
        code = relay.enrollment_code(tenant, "default")
        if how == "stdin":
            monkeypatch.setattr("sys.stdin", io.StringIO(code + "\n"))
            args = ["enroll"]
        else:
            code_file = tmp_path / "code.txt"
            code_file.write_text(code + "\n")
            args = ["enroll", "--code-file", str(code_file)]
        # Only the relay matters to enroll; the example's directory is left as it is.
        env_dir = json.dumps([])
        monkeypatch.setenv("WRITEBACK_DIRECTORIES", env_dir)
        assert cli("-c", str(config), *args) == 0, capsys.readouterr().err
        assert "enrolled as agent" in capsys.readouterr().out


def test_run_refuses_before_leasing_when_the_health_port_is_taken(
    slapd_env: DirectoryEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8 item 5: with the health port taken, `run` exits 2 without leasing, so a
    request already queued is served at once by the next start, not after the lease
    timeout (60 s on this relay)."""
    relay = start_relay(tmp_path / "relay", lease_timeout=60)
    try:
        system = AgentSystem.create(
            tmp_path / "agent", relay,
            [directory_entry(slapd_env.settings, tmp_path, name="ldap", default=True)],
        )
        login = unique_login("h")
        slapd_env.create_user(login, "Initial-Pass-1")
        time.sleep(1)
        request = system.portal.request("reset", login, new_password="Health-Port-1")
        system.portal.submit(request)
        port = system.settings().health.port
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            assert cli("-c", str(system.config), "run") == 2
        assert f"[health] port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
        assert system.portal.client.poll_result(request.id)[0] == "queued"  # never leased
        started = time.monotonic()
        with system.running():
            result = system.portal.wait(request, timeout=30)
        assert result.status == "succeeded"
        assert time.monotonic() - started < 30  # not held by a lease from the refused run
        system.close()
    finally:
        relay.stop()


def test_run_speaks_sd_notify_and_reloads_on_sighup(system: AgentSystem, tmp_path: Path) -> None:
    """`writeback-agent run` as systemd starts it (Type=notify, WatchdogSec=): READY=1
    with a STATUS line once started, WATCHDOG=1 pings while its loop runs, SIGHUP
    reloads the keys, SIGTERM stops it cleanly with STOPPING=1."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
        agent = Path(sys.executable).parent / "writeback-agent"
        proc = subprocess.Popen([str(agent), "-c", str(system.config), "run"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = sock.recv(4096).decode().splitlines()
            assert ready[0] == "READY=1" and ready[1].startswith("STATUS=")
            assert f"MAINPID={proc.pid}" in ready
            messages = [sock.recv(4096).decode() for _ in range(3)]
            assert "WATCHDOG=1" in messages, messages
            proc.send_signal(signal.SIGHUP)
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            rest: list[str] = []
            while not any(m.startswith("STOPPING=1") for m in rest):
                rest.append(sock.recv(4096).decode())
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            _out, err = proc.communicate(timeout=10)
    assert '"keys.reloaded"' in err and '"reason": "SIGHUP"' in err, err[-2000:]


def test_keys_rotate_as_root_leaves_the_files_to_the_service_account(
    system: AgentSystem,
) -> None:
    """Root runs `keys rotate` on a data dir the service account owns: the new key files
    are handed to that account at once (before the relay learns the key), or the running
    agent could not read the key the portal now seals to."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root)")
    data = system.config.parent / "data"
    service_uid = 65534
    for path in [data, *data.rglob("*")]:
        os.chown(path, service_uid, service_uid)
    assert not (data / "keys" / "kem.previous.key").exists()

    assert cli("-c", str(system.config), "keys", "rotate", "--overlap", "3600") == 0
    assert (data / "keys" / "kem.previous.key").exists()  # written by root just now
    owners = {str(p.relative_to(data)): (p.stat().st_uid, p.stat().st_gid)
              for p in [data, *data.rglob("*")]}
    assert set(owners.values()) == {(service_uid, service_uid)}, owners
