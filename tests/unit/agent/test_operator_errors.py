"""Every operator mistake from issue 12 gets one line naming the key or file and what to
do; exit 2 for configuration and usage errors, 1 for failed checks; no traceback
unless --debug. `check` and `run` agree because both load through the same validation.

Nothing here listens or connects beyond loopback: the relay and the directory are
closed ports on 127.0.0.1, which is what an unreachable server looks like.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from agent.cli import main
from agent.enrollment import Enrollment, keyring_path
from cloud.sdk import PortalSigner
from tests.unit.agent.conftest import NOBODY, REPO, NobodyPython
from wire.keyring import PortalKeyring
from wire.keys import AgentKeys

RELAY = "http://127.0.0.1:1"
pytestmark = pytest.mark.timeout(60)  # a `run` that wrongly starts must not hang the suite


@dataclass
class Setup:
    root: Path
    doc: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def write(self) -> None:
        self.config.write_text(tomli_w.dumps(self.doc), encoding="utf-8")


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    """A complete, valid, enrolled configuration whose servers are closed ports."""
    data = tmp_path / "data"
    AgentKeys.generate().save(data / "keys")
    Enrollment("a-1", "t", "default", RELAY).save(data / "enrollment.json")
    PortalKeyring([PortalSigner.generate().trusted_key()]).save(keyring_path(data))
    password = tmp_path / "bindpw"
    password.write_text("x")
    password.chmod(0o600)
    doc: dict[str, Any] = {
        "data_dir": str(data),
        "agent_name": "errors",
        "relay": {"url": RELAY, "timeout_seconds": 2},
        "health": {"port": 0},
        "directories": [
            {
                "name": "corp",
                "kind": "openldap",
                "urls": ["ldaps://127.0.0.1:1"],
                "bind_dn": "cn=svc,dc=x",
                "bind_password_file": str(password),
                "base_dns": ["dc=x"],
                "connect_timeout": 1,
            }
        ],
    }
    return Setup(tmp_path, doc)


def _set(path: str, value: Any) -> Callable[[Setup], None]:
    def apply(s: Setup) -> None:
        target: Any = s.doc
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
        s.write()

    return apply


def _raw(content: bytes) -> Callable[[Setup], None]:
    def apply(s: Setup) -> None:
        s.config.write_bytes(content)

    return apply


def _file(name: str, content: bytes, mode: int = 0o600) -> Callable[[Setup], None]:
    def apply(s: Setup) -> None:
        (s.data / name).write_bytes(content)
        (s.data / name).chmod(mode)

    return apply


def _env(name: str, value: str) -> Callable[[Setup], None]:
    def apply(s: Setup) -> None:
        s.env[name] = value

    return apply


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# (id, command, change, exit status, words the one line must contain)
CASES: list[tuple[str, str, Callable[[Setup], None], int, tuple[str, ...]]] = [
    ("toml-syntax", "check", _raw(b"workers = = 4\n"), 2, ("TOML syntax error", "line 1")),
    ("not-utf8", "check", _raw(b"agent_name = 'caf\xe9'\n"), 2, ("not UTF-8", "save it as UTF-8")),
    ("missing-ca", "check", _set("directories.0.ca_file", "/nonexistent/ca.pem"), 2,
     ("directories.0.ca_file", "/nonexistent/ca.pem does not exist")),
    ("missing-relay-ca", "run", _set("relay.ca_file", "/nonexistent/relay.pem"), 2,
     ("relay.ca_file", "does not exist")),
    ("garbage-journal", "run", _file("journal.sqlite3", b"garbage" * 200), 2,
     ("journal", "journal.sqlite3", "move the file away")),
    ("garbage-enrollment-check", "check", _file("enrollment.json", b"\x00garbage"), 1,
     ("[FAIL] enrollment", "enrollment.json", "enroll again")),
    ("garbage-enrollment-run", "run", _file("enrollment.json", b"[1, 2]"), 2,
     ("enrollment.json is not an enrollment record", "enroll again")),
    ("garbage-keyring", "run", _file("portal_keys.json", b"{}"), 2,
     ("portal_keys.json is not a portal keyring",)),
    ("bad-env-directories", "check", _env("WRITEBACK_DIRECTORIES", "corp"), 2,
     ("environment variable WRITEBACK_DIRECTORIES is not valid JSON", "fix it or unset it")),
    ("env-heartbeat-zero", "check", _env("WRITEBACK_SCHEDULE__HEARTBEAT_SECONDS", "0"), 2,
     ("schedule.heartbeat_seconds (from WRITEBACK_SCHEDULE__HEARTBEAT_SECONDS)",)),
    ("heartbeat-zero", "run", _set("schedule", {"heartbeat_seconds": 0}), 2,
     ("schedule.heartbeat_seconds", "greater than 0")),
    ("health-not-loopback", "check", _set("health.host", "192.0.2.10"), 2,
     ("health", "192.0.2.10", "not a loopback address", "allow_remote")),
    ("relay-plain-http", "check", _set("relay.url", "http://relay.example.com"), 2,
     ("relay", "http://relay.example.com", "use https://")),
    ("relay-ftp", "check", _set("relay.url", "ftp://relay.example.com"), 2,
     ("relay.url", "not an https:// URL")),
    ("ldaps-no-host", "check", _set("directories.0.urls", ["ldaps://"]), 2,
     ("directories.0.urls", "names no host")),
    ("http-dc", "check", _set("directories.0.urls", ["http://dc"]), 2,
     ("directories.0.urls", "'http://dc' is not an ldaps:// or ldap:// URL")),
    ("plain-ldap", "check", _set("directories.0.urls", ["ldap://127.0.0.1:1"]), 2,
     ("directories.0", "in clear", "start_tls")),
    ("negative-deadline", "run", _set("directory_deadline_seconds", -5), 2,
     ("directory_deadline_seconds", "greater than 0")),
    ("missing-bind-password", "check", _set("directories.0.bind_password_file", "/nope/pw"), 2,
     ("bind_password_file /nope/pw", "create it")),
    ("no-directory-check", "check", _set("directories", []), 1,
     ("[FAIL] directories", "`run` refuses to start")),
    ("no-directory-run", "run", _set("directories", []), 2, ("no [[directories]] configured",)),
    ("keyring-writable-check", "check", _file("portal_keys.json", b"{}", 0o666), 1,
     ("[FAIL] file permissions", "portal_keys.json can be changed by other users", "chmod go-w")),
    ("keyring-writable-run", "run",
     lambda s: (keyring_path(s.data)).chmod(0o664), 2,
     ("refusing to start", "portal_keys.json can be changed by other users")),
    ("unknown-key", "check", _set("wokers", 4), 2, ("wokers", "Extra inputs are not permitted")),
    # check refuses what run refuses (a journal SQLite cannot use: both say the same)
    ("garbage-journal-check", "check", _file("journal.sqlite3", b"garbage" * 200), 1,
     ("[FAIL] journal", "not a usable SQLite database", "move the file away")),
    ("bind-password-readable", "check", lambda s: (s.root / "bindpw").chmod(0o644), 2,
     ("bind_password_file", "every local user", "mode 0644", "chmod 600")),
    ("config-writable-check", "check", lambda s: s.config.chmod(0o666), 1,
     ("[FAIL] file permissions", "agent.toml can be changed by other users", "chmod go-w")),
    ("config-writable-run", "run", lambda s: s.config.chmod(0o620), 2,
     ("refusing to start", "agent.toml can be changed by other users")),
    ("key-file-writable-run", "run", lambda s: (s.data / "keys" / "kem.key").chmod(0o666), 2,
     ("refusing to start", "kem.key can be changed by other users")),
    ("key-too-open-check", "check", lambda s: (s.data / "keys" / "kem.key").chmod(0o640), 1,
     ("[FAIL] agent keys", "kem.key", "too open", "chmod 600")),
    ("key-garbage-run", "run", _file("keys/kem.key", b"not a key"), 2,
     ("kem.key", "unreadable key file", "init --force", "enroll again")),
    ("keys-missing-check", "check", lambda s: (s.data / "keys" / "signing.key").unlink(), 1,
     ("[FAIL] agent keys", "signing.key: missing", "writeback-agent init")),
]


@pytest.mark.parametrize(("command", "change", "status", "words"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator_error_is_one_line(  # noqa: PLR0917 - pytest passes fixtures positionally
    setup: Setup,
    command: str,
    change: Callable[[Setup], None],
    status: int,
    words: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup.write()
    change(setup)
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)

    assert main(["-c", str(setup.config), command]) == status
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    if status == 2:
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"writeback-agent {command}: ")
    else:
        line = next(x for x in out.splitlines() if words[0] in x)
    for word in words:
        assert word in line, line


def test_config_path_that_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(tmp_path), "check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"configuration file {tmp_path} is not a file" in err


def test_health_port_in_use_refuses_before_leasing(
    setup: Setup, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.doc["health"] = {"port": busy_port}
    setup.write()
    assert main(["-c", str(setup.config), "run"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"[health] port {busy_port} on 127.0.0.1 is in use" in line
    assert "change [health] port" in line


def test_check_shows_the_relay_url_it_uses_after_the_config_changed(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """Decision: `[relay] url` wins over the URL saved at enrollment (the relay moved);
    check says which one it tried and where the agent enrolled."""
    setup.doc["relay"]["url"] = "http://127.0.0.1:2"
    setup.write()
    assert main(["-c", str(setup.config), "check"]) == 1
    relay_line = next(x for x in capsys.readouterr().out.splitlines() if "] relay" in x)
    assert relay_line.startswith("[FAIL] relay: http://127.0.0.1:2 (enrolled at http://127.0.0.1:1)")


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.write()

    def boom(*_args: Any) -> Any:
        raise RuntimeError("something broke")

    monkeypatch.setattr("agent.checks.run_checks", boom)
    assert main(["-c", str(setup.config), "check"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "writeback-agent check: unexpected RuntimeError: something broke "
        "(run with --debug for the traceback)\n"
    )
    assert main(["--debug", "-c", str(setup.config), "check"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_windows_data_dir_round_trips_through_init(tmp_path: Path) -> None:
    """init writes the path through a TOML writer: backslashes survive a reload, and
    the settings read back a path that is the same Windows path."""
    from pathlib import PureWindowsPath

    from agent.cli import starter_config

    windows = PureWindowsPath(r"C:\ProgramData\writeback-agent")
    text = starter_config(windows, "https://relay.example.com")  # type: ignore[arg-type]
    doc = tomllib.loads(text)
    assert PureWindowsPath(doc["data_dir"]) == windows
    assert doc["data_dir"] == r"C:\ProgramData\writeback-agent"
    assert r'data_dir = "C:\\ProgramData\\writeback-agent"' in text


def test_version_and_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("writeback-agent 0.")
    assert main(["config", "example"]) == 0
    example = tomllib.loads(capsys.readouterr().out)
    from agent.config import Settings

    # every setting is shown in the example (agent_name commented: default is the host)
    assert set(Settings.model_fields) - set(example) == {"agent_name"}
    for table in ("relay", "health", "log", "schedule"):
        model = Settings.model_fields[table].annotation
        fields = getattr(model, "model_fields", None) or next(
            a.model_fields for a in model.__args__ if hasattr(a, "model_fields")  # type: ignore[union-attr]
        )
        assert set(fields) - set(example[table]) <= {"ca_file"}, table


def test_status_reads_a_broken_journal_without_a_traceback_or_a_change(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """status (often run as root) reads the journal read-only and says what is wrong."""
    setup.write()
    journal = setup.data / "journal.sqlite3"
    journal.write_bytes(b"garbage" * 200)
    assert main(["-c", str(setup.config), "status"]) == 1  # no agent running: 1, no traceback
    out = json.loads(capsys.readouterr().out)
    assert out["running"] is False
    assert "not a usable SQLite database" in out["journal"]
    assert journal.read_bytes() == b"garbage" * 200
    journal.unlink()
    assert main(["-c", str(setup.config), "status"]) == 1
    assert "journal" not in json.loads(capsys.readouterr().out)
    assert not journal.exists()  # status never creates it (it would be root's file)


def test_keys_show_names_the_enrolled_agent(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.write()
    assert main(["-c", str(setup.config), "keys", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["agent_id"] == "a-1"
    (setup.data / "enrollment.json").unlink()
    assert main(["-c", str(setup.config), "keys", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["agent_id"] is None


def test_output_into_a_closed_pipe_is_quiet(setup: Setup) -> None:
    """`writeback-agent config example | head -1`: no BrokenPipeError, no traceback."""
    setup.write()
    script = (
        "import sys; from agent.cli import main; "
        "sys.exit(main(['-c', sys.argv[1], 'config', 'example']))"
    )
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(setup.config)],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=30, check=False,
        )
    finally:
        os.close(write)
    assert proc.returncode == 1
    assert proc.stderr == ""


def test_a_relative_bind_password_file_is_found_next_to_agent_toml_or_in_credentials(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The example's `bind_password_file = "corp-bind-password"`: a root shell running
    `check` (no $CREDENTIALS_DIRECTORY) and the systemd service read the same file."""
    from agent.config import load_settings

    (setup.root / "corp-bind-password").write_text("next-to-config\n")
    (setup.root / "corp-bind-password").chmod(0o600)
    setup.doc["directories"][0]["bind_password_file"] = "corp-bind-password"
    setup.write()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not where agent.toml is
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    secret = load_settings(setup.config).directories[0].bind_password
    assert secret.get_secret_value() == "next-to-config"

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "corp-bind-password").write_text("from-systemd\n")
    (creds / "corp-bind-password").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    secret = load_settings(setup.config).directories[0].bind_password
    assert secret.get_secret_value() == "from-systemd"

    (creds / "corp-bind-password").unlink()
    assert main(["-c", str(setup.config), "check"]) == 2
    err = capsys.readouterr().err
    assert f"bind_password_file {creds / 'corp-bind-password'}" in err


@pytest.mark.parametrize("unreadable", ["ca_file", "bind_password_file"])
def test_a_file_the_service_user_cannot_read_is_one_line(
    unreadable: str, request: pytest.FixtureRequest
) -> None:
    """Root set up the files, the service runs as another user: `check`/`run` as that
    user say which file it cannot read (not an unexpected PermissionError). As root,
    the command runs as nobody (setpriv); as any other user, the file is made 0000."""
    import shutil
    import tempfile

    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run as another user")
    root = Path(tempfile.mkdtemp(prefix="wb-unreadable-", dir="/tmp"))
    try:
        root.chmod(0o755)
        ca, password = root / "ca.pem", root / "bindpw"
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
        ca.chmod(0o644)
        password.write_text("x")
        password.chmod(0o600)
        if as_root and unreadable == "ca_file":
            os.chown(password, 65534, 65534)  # nobody reads its password, not the CA
        target = ca if unreadable == "ca_file" else password
        target.chmod(0o600 if as_root else 0o000)  # root's own 0600 file, or unreadable
        doc = {
            "data_dir": str(root / "data"),
            "relay": {"url": RELAY},
            "directories": [{
                "name": "corp", "kind": "openldap", "urls": ["ldaps://127.0.0.1:1"],
                "ca_file": str(ca), "bind_dn": "cn=svc,dc=x",
                "bind_password_file": str(password), "base_dns": ["dc=x"],
            }],
        }
        config = root / "agent.toml"
        config.write_text(tomli_w.dumps(doc))
        config.chmod(0o644)
        script = "import sys; from agent.cli import main; sys.exit(main(sys.argv[1:]))"
        if as_root:
            runner: NobodyPython = request.getfixturevalue("nobody_python")
            command, env = [*NOBODY, runner.python], runner.env()
        else:
            command, env = [sys.executable], {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [*command, "-c", script, "-c", str(config), "check"],
            capture_output=True, text=True, timeout=60, check=False, cwd="/", env=env,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{unreadable} {target} cannot be read by this user" in proc.stderr
    finally:
        shutil.rmtree(root)


def test_a_data_dir_the_service_user_does_not_own_is_named(
    tmp_path: Path, nobody_python: NobodyPython
) -> None:
    """The classic: init and enroll ran as root, nobody ran `chown -R`. check, run and
    status as the service user say so in one line; run exits 2 (no restart loop)."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to own a directory another user cannot use")  # CI runs as root
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run as another user")
    root = Path(tempfile.mkdtemp(prefix="wb-notmine-", dir="/tmp"))
    try:
        root.chmod(0o755)
        data = root / "data"
        AgentKeys.generate().save(data / "keys")
        Enrollment("a-1", "t", "default", RELAY).save(data / "enrollment.json")
        (data / "journal.sqlite3").write_bytes(b"")
        data.chmod(0o700)  # root's, as `init` left it
        password = root / "bindpw"
        password.write_text("x")
        os.chown(password, 65534, 65534)
        password.chmod(0o600)
        config = root / "agent.toml"
        config.write_text(tomli_w.dumps({
            "data_dir": str(data), "relay": {"url": RELAY}, "health": {"port": 0},
            "directories": [{
                "name": "corp", "kind": "openldap", "urls": ["ldaps://127.0.0.1:1"],
                "bind_dn": "cn=svc,dc=x", "bind_password_file": str(password),
                "base_dns": ["dc=x"],
            }],
        }))
        config.chmod(0o644)
        script = "import sys; from agent.cli import main; sys.exit(main(sys.argv[1:]))"
        env = nobody_python.env()
        results = {}
        for command in ("check", "run", "status"):
            proc = subprocess.run(
                [*NOBODY, nobody_python.python, "-c", script, "-c", str(config), command],
                capture_output=True, text=True, timeout=60, check=False, cwd="/", env=env,
            )
            assert "Traceback" not in proc.stdout + proc.stderr
            results[command] = (proc.returncode, proc.stdout + proc.stderr)
        assert results["check"][0] == 1
        assert f"[FAIL] data directory: data_dir {data} cannot be used by this user" \
            in results["check"][1]
        assert results["run"][0] == 2
        assert f"chown -R nobody {data}" in results["run"][1]
        assert results["status"][0] == 2
        assert "permission denied for this user (uid 65534)" in results["status"][1]
    finally:
        shutil.rmtree(root)
