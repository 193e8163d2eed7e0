"""Local file rules: 0700/0600 on POSIX, the Windows ACL command lines (built and
checked as strings here; they have not run on Windows), and which files are refused
(on Windows: read from SDDL strings by SID; advapi32 replaced by a recorder)."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path, PureWindowsPath

import pytest

from agent.localfiles import (
    create_private,
    icacls_restrict,
    restrict_data_dir,
    untrusted_reason,
)
from agent.winacl import BadSddl, broad_writers, file_sddl


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


class _Ran:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **_kwargs: object) -> object:
        self.calls.append(args)
        return type("Completed", (), {"stdout": "", "returncode": 0})()


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


# Security descriptors as advapi32 gives them (SDDL: SIDs and aliases, no localised
# names, so a German or Japanese Windows produces exactly these strings).
_ME = "S-1-5-21-1004336348-1177238915-682003330-1001"
_GMSA = "S-1-5-21-3623811015-3361044348-30300820-1105"
SDDL_PROFILE_FILE = f"O:{_ME}G:{_ME}D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;FA;;;{_ME})"
SDDL_RESTRICTED_DIR = f"O:BAG:SYD:PAI(A;OICI;FA;;;{_GMSA})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
SDDL_RESTRICTED_FILE = f"O:BAG:SYD:AI(A;ID;FA;;;{_GMSA})(A;ID;FA;;;SY)(A;ID;FA;;;BA)"
# A folder made under ProgramData and not restricted: Users may add files to it (CI,
# so the folder itself), read the files in it, and CREATOR OWNER gets full control of
# what they create (inherit-only).
SDDL_PROGRAMDATA_DIR = (
    "O:BAG:SYD:AI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIIOID;GA;;;CO)"
    "(A;OICIID;0x1200a9;;;BU)(A;CIID;DCLCRPCR;;;BU)"
)
SDDL_PROGRAMDATA_FILE = "O:BAG:SYD:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;0x1200a9;;;BU)"


@pytest.mark.parametrize(("sddl", "writers"), [
    (SDDL_PROFILE_FILE, []),
    (SDDL_RESTRICTED_DIR, []),
    (SDDL_RESTRICTED_FILE, []),
    (SDDL_PROGRAMDATA_FILE, []),
    (SDDL_PROGRAMDATA_DIR, ["BU (Users): inherited DCLCRPCR (write data, append data)"]),
    # icacls /grant Users:M, as the hex mask Windows writes for "modify"
    (SDDL_RESTRICTED_FILE + "(A;;0x1301bf;;;BU)",
     ["BU (Users): 0x1301bf (write data, append data, delete)"]),
    # Everyone read-only, and read+execute: not a writer
    (SDDL_RESTRICTED_FILE + "(A;;FR;;;WD)(A;;0x1200a9;;;WD)", []),
    # inherit-only: applies to children, not to this object
    (SDDL_RESTRICTED_DIR + "(A;OICIIO;GA;;;BU)(A;OICIIO;FA;;;WD)(A;;FA;;;CO)", []),
    # deny ACEs do not count either way; audit and label ACEs are not grants
    (SDDL_RESTRICTED_FILE + "(D;;FA;;;WD)(AU;SAFA;FA;;;WD)(ML;;NW;;;LW)", []),
    # changing the ACL or the owner is as good as writing
    (SDDL_RESTRICTED_FILE + "(A;;WD;;;WD)(A;;0x80000;;;AU)",
     ["WD (Everyone): WD (change permissions)",
      "AU (Authenticated Users): 0x80000 (take ownership)"]),
    # by full SID rather than alias, Domain Users of another domain, generic rights
    (SDDL_RESTRICTED_FILE + "(A;ID;GW;;;S-1-5-32-545)(A;;GA;;;S-1-5-21-1-2-3-513)"
     "(a;;0x40000000;;;s-1-5-11)",
     ["BU (Users): inherited GW (generic write)", "DU (Domain Users): GA (generic all)",
      "AU (Authenticated Users): 0x40000000 (generic write)"]),
    # a conditional allow may hold: it counts
    (SDDL_RESTRICTED_FILE + '(XA;;FA;;;IU;(@User.Title == "PM; temp)"))(A;;GA;;;WD)',
     ["IU (Interactive): FA (write data, append data, delete child, delete, "
      "change permissions, take ownership)", "WD (Everyone): GA (generic all)"]),
    # FILE_WRITE_EA / FILE_WRITE_ATTRIBUTES alone change no bytes and no rights
    (SDDL_RESTRICTED_FILE + "(A;;0x110;;;BU)", []),
    ("O:BUD:PAI(A;;FA;;;SY)", ["owner BU (Users)"]),
    ("O:SYD:NO_ACCESS_CONTROL", ["WD (Everyone): no DACL at all (full control for everyone)"]),
    ("O:SYD:P", []),  # an empty DACL: nobody but the owner's implicit rights
])
def test_broad_writers_are_read_by_sid(sddl: str, writers: list[str]) -> None:
    assert broad_writers(sddl) == writers


@pytest.mark.parametrize("garbled", [
    "", "garbage", "O:SY", "D:(A;;FA;;;WD", "D:(A;;ZZ;;;WD)", "D:(A;;FA)", "D:(A;;0xZZ;;;WD)",
    "D:(A;;FA;;;SY)junk(A;;FA;;;BA)", "D:(A;QQ;FA;;;SY)", "D:(A;;FA;;;SY))", "D:P\x00(A;;FA;;;WD)",
    "O:SYD:PD:P", "D:(A;;F;;;SY)", "D:(A;;FA;;;)", "D:(A;;0x;;;WD)", "D:(A;;-1;;;WD)",
])
def test_garbled_sddl_is_refused_not_trusted(
    garbled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BadSddl):
        broad_writers(garbled)
    monkeypatch.setattr("agent.localfiles.os.name", "nt")
    monkeypatch.setattr("agent.winacl.file_sddl", lambda _p: garbled)
    reason = untrusted_reason(tmp_path / "portal_keys.json")
    assert reason is not None and "cannot understand the permissions" in reason


def test_random_sddl_never_crashes() -> None:
    """Anything advapi32 (or a hostile file system driver) hands back either parses or
    is BadSddl: no other exception escapes into the agent's start."""
    rng = random.Random(12)  # noqa: S311 - a reproducible fuzz input, not a secret
    alphabet = "ODGS:();AIDOCFWURXx0123456789abf-\" @"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            assert isinstance(broad_writers(text), list)
        except BadSddl:
            pass


class _Sddl:
    """Replaces winacl.file_sddl (advapi32): records the paths, answers one SDDL."""

    def __init__(self, sddl: str | OSError) -> None:
        self.paths: list[str] = []
        self.sddl = sddl

    def __call__(self, path: str) -> str:
        self.paths.append(path)
        if isinstance(self.sddl, OSError):
            raise self.sddl
        return self.sddl


def test_windows_branch_refuses_what_users_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """German Windows: icacls would say "VORDEFINIERT\\Benutzer:(M)", which the old
    English-name match let through; the SDDL says BU on every Windows."""
    keys = tmp_path / "portal_keys.json"
    monkeypatch.setattr("agent.localfiles.os.name", "nt")
    recorder = _Sddl(SDDL_RESTRICTED_FILE + "(A;ID;0x1301bf;;;BU)")
    monkeypatch.setattr("agent.winacl.file_sddl", recorder)
    assert untrusted_reason(keys) == (
        f"{keys} can be changed by BU (Users): inherited 0x1301bf (write data, append data, "
        "delete): restrict it with icacls (docs/operations.md, Windows)"
    )
    assert recorder.paths == [str(keys)]
    monkeypatch.setattr("agent.winacl.file_sddl", _Sddl(SDDL_RESTRICTED_FILE))
    assert untrusted_reason(keys) is None
    denied = OSError(0, "Access is denied", str(keys))
    monkeypatch.setattr("agent.winacl.file_sddl", _Sddl(denied))
    assert untrusted_reason(keys) == f"cannot read the permissions of {keys}: Access is denied"


def test_reading_an_acl_off_windows_is_an_error_not_a_pass() -> None:
    with pytest.raises(OSError, match="needs Windows"):
        file_sddl(r"C:\ProgramData\writeback-agent\portal_keys.json")
