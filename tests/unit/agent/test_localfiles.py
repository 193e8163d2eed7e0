"""Local file rules: 0700/0600 on POSIX, the Windows ACL command lines (built and
checked as strings here; they have not run on Windows), and which files are refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PureWindowsPath

import pytest

from agent.localfiles import (
    create_private,
    icacls_restrict,
    restrict_data_dir,
    untrusted_reason,
    writable_by_others_icacls,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_restrict_data_dir_tightens_an_older_install(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    data.chmod(0o755)
    (data / "keys").chmod(0o755)
    journal = data / "journal.sqlite3"
    journal.write_text("")
    journal.chmod(0o644)
    changed = restrict_data_dir(data)
    assert set(changed) == {data, data / "keys", journal}
    assert (_mode(data), _mode(data / "keys"), _mode(journal)) == (0o700, 0o700, 0o600)
    assert restrict_data_dir(data) == []


def test_create_private_is_0600_from_the_first_byte(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_private(tmp_path / "j.sqlite3")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "j.sqlite3") == 0o600


@pytest.mark.parametrize(("mode", "refused"), [(0o600, False), (0o644, False), (0o664, True),
                                               (0o646, True), (0o666, True)])
def test_files_others_can_write_are_refused(tmp_path: Path, mode: int, refused: bool) -> None:
    path = tmp_path / "portal_keys.json"
    path.write_text("{}")
    path.chmod(mode)
    reason = untrusted_reason(path)
    assert (reason is not None) is refused
    if refused:
        assert reason is not None and f"mode {mode:04o}" in reason and "chmod go-w" in reason


def test_icacls_command_restricts_to_service_account_and_system() -> None:
    data = PureWindowsPath(r"C:\ProgramData\writeback-agent")
    assert icacls_restrict(data, "CORP\\gmsa-writeback$", directory=True) == [
        r"C:\Windows\System32\icacls.exe",
        r"C:\ProgramData\writeback-agent",
        "/inheritance:r",
        "/grant:r",
        "CORP\\gmsa-writeback$:(OI)(CI)F",
        "*S-1-5-18:(OI)(CI)F",
        "*S-1-5-32-544:(OI)(CI)F",
    ]
    key = icacls_restrict(data / "keys" / "signing.key", "CORP\\gmsa-writeback$", directory=False)
    assert key[1] == r"C:\ProgramData\writeback-agent\keys\signing.key"
    assert key[4:] == ["CORP\\gmsa-writeback$:F", "*S-1-5-18:F", "*S-1-5-32-544:F"]


ICACLS_OPEN = r"""C:\ProgramData\writeback-agent\portal_keys.json BUILTIN\Users:(I)(M)
                                                 NT AUTHORITY\SYSTEM:(I)(F)
                                                 NT AUTHORITY\Authenticated Users:(I)(RX,W)
                                                 Everyone:(R)
                                                 CORP\gmsa-writeback$:(F)
Successfully processed 1 files; Failed processing 0 files
"""
ICACLS_RESTRICTED = r"""C:\ProgramData\writeback-agent\portal_keys.json NT AUTHORITY\SYSTEM:(F)
                                                 CORP\gmsa-writeback$:(F)
                                                 BUILTIN\Users:(RX)
Successfully processed 1 files; Failed processing 0 files
"""


def test_icacls_output_names_broad_write_grants() -> None:
    assert writable_by_others_icacls(ICACLS_OPEN) == [
        "BUILTIN\\Users:(I)(M)",
        "NT AUTHORITY\\Authenticated Users:(I)(RX,W)",
    ]
    assert writable_by_others_icacls(ICACLS_RESTRICTED) == []


class _Ran:
    def __init__(self, stdout: str = "") -> None:
        self.calls: list[list[str]] = []
        self.stdout = stdout

    def __call__(self, args: list[str], **_kwargs: object) -> object:
        self.calls.append(args)
        return type("Completed", (), {"stdout": self.stdout, "returncode": 0})()


def test_windows_branch_runs_icacls_on_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The os.name == "nt" code paths, with icacls replaced by a recorder (Linux has none)."""
    ran = _Ran()
    monkeypatch.setattr("agent.localfiles.os.name", "nt")
    monkeypatch.setattr("agent.localfiles.subprocess.run", ran)
    monkeypatch.setenv("USERDOMAIN", "CORP")
    monkeypatch.setattr("agent.localfiles.getpass.getuser", lambda: "gmsa-writeback$")
    monkeypatch.setenv("SYSTEMROOT", r"D:\Windows")
    restrict_data_dir(tmp_path / "data")
    assert ran.calls == [[
        r"D:\Windows\System32\icacls.exe", str(PureWindowsPath(tmp_path / "data")),
        "/inheritance:r", "/grant:r", "CORP\\gmsa-writeback$:(OI)(CI)F", "*S-1-5-18:(OI)(CI)F",
        "*S-1-5-32-544:(OI)(CI)F",
    ]]


def test_windows_branch_refuses_what_users_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.localfiles.os.name", "nt")
    monkeypatch.setattr("agent.localfiles.subprocess.run", _Ran(ICACLS_OPEN))
    reason = untrusted_reason(tmp_path / "portal_keys.json")
    assert reason is not None and "BUILTIN\\Users:(I)(M)" in reason
    monkeypatch.setattr("agent.localfiles.subprocess.run", _Ran(ICACLS_RESTRICTED))
    assert untrusted_reason(tmp_path / "portal_keys.json") is None


def test_settings_need_no_os_uname(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no os.uname: the default agent name must not use it."""
    from agent.config import Settings

    monkeypatch.delattr(os, "uname", raising=False)
    assert Settings().agent_name


def test_the_docs_icacls_line_is_what_the_agent_runs() -> None:
    """docs/operations.md's step 3 grants exactly what the agent re-applies at start."""
    docs = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    line = next(x.strip() for x in docs.splitlines() if x.strip().startswith("icacls "))
    argv = [a.strip('"') for a in line.split()[1:]]
    want = icacls_restrict(r"C:\ProgramData\writeback-agent", "CORP\\gmsa-writeback$",
                           directory=True)[1:]
    assert argv == want


def test_windows_branches_of_the_ownership_helpers_need_no_posix_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Windows there is no os.getuid/geteuid/chown to call: the helpers that hand
    files to the service account or explain an unusable data dir must not reach them."""
    from agent.localfiles import give_to_data_dir_owner, unusable_data_dir

    (tmp_path / "data").mkdir()
    monkeypatch.setattr("agent.localfiles.os.name", "nt")
    for name in ("getuid", "geteuid", "chown"):
        monkeypatch.delattr(os, name)
    assert give_to_data_dir_owner(tmp_path / "data") == []
    assert unusable_data_dir(tmp_path / "data") is None
    monkeypatch.setattr("agent.localfiles.os.access", lambda *_a: False)
    reason = unusable_data_dir(tmp_path / "data")
    assert reason is not None and "grant the service account full control" in reason
