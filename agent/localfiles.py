"""The agent's files on disk: who may read them, and which ones it refuses to trust.

The data directory holds the private keys, the pinned portal keys (what decides whose
requests are obeyed), the enrollment record and the journal (user names). So:

- the data directory is 0700 and every file in it 0600 (POSIX), or, on Windows,
  an ACL with inheritance removed granting full control to the service account,
  SYSTEM and the local Administrators only (`icacls_restrict`);
- a key or trust file that anyone but its owner can write is refused, not fixed:
  someone may already have changed it (`untrusted_reason`). On Windows the same
  question is answered from the file's security descriptor, by SID, so it holds on a
  Windows in any language (agent/winacl.py): Everyone, Users, Authenticated Users,
  Domain Users, Guests... allowed to write, delete or change the ACL or owner.

What has not run on Windows: the icacls command line and the advapi32 call that reads
the security descriptor (`winacl.file_sddl`). The Windows branches, with both
replaced by recorders, and the SDDL parsing are tested on Linux only
(tests/unit/agent/test_localfiles.py); no icacls or advapi32 call has been executed.
"""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
from pathlib import Path, PureWindowsPath

from agent import winacl

__all__ = [
    "UntrustedFile",
    "give_to_data_dir_owner",
    "icacls_restrict",
    "key_hint",
    "restrict_data_dir",
    "untrusted_reason",
    "unusable_data_dir",
    "windows_account",
]

SYSTEM_SID = "*S-1-5-18"
# BUILTIN\Administrators: they can take ownership of any file anyway; without them an
# administrator could neither edit agent.toml nor run `check` after the install.
ADMINISTRATORS_SID = "*S-1-5-32-544"


class UntrustedFile(Exception):
    """A key or trust file that others can change; the message says how to fix it."""


def icacls_exe() -> str:
    """icacls by full path (not found through PATH, which a local user may prepend to)."""
    root = os.environ.get("SYSTEMROOT", r"C:\Windows")
    return str(PureWindowsPath(root, "System32", "icacls.exe"))


def windows_account() -> str:
    """The account the service runs as, DOMAIN\\user (a gMSA ends in $)."""
    domain = os.environ.get("USERDOMAIN", "")
    user = getpass.getuser()
    return f"{domain}\\{user}" if domain else user


def icacls_restrict(path: str | PureWindowsPath, account: str, *, directory: bool) -> list[str]:
    """The icacls command line that leaves `path` to `account`, SYSTEM and the local
    Administrators only (SIDs, so it works on a Windows in any language).

    /inheritance:r drops what ProgramData hands down (Users: read); /grant:r replaces
    any grant these already have. (OI)(CI) on a directory makes the files created in it
    later inherit the same entries.
    """
    inherit = "(OI)(CI)" if directory else ""
    return [
        icacls_exe(),
        str(PureWindowsPath(path)),
        "/inheritance:r",
        "/grant:r",
        f"{account}:{inherit}F",
        f"{SYSTEM_SID}:{inherit}F",
        f"{ADMINISTRATORS_SID}:{inherit}F",
    ]


def untrusted_reason(path: Path) -> str | None:
    """Why `path` (a key or trust file, or the directory holding them) must not be
    trusted, or None. Group- or other-writable, or owned by another non-root user."""
    if os.name == "nt":
        return windows_untrusted_reason(path)
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} can be changed by other users (mode {mode:04o}): chmod go-w {path}"
    if st.st_uid not in (os.getuid(), 0):
        return f"{path} belongs to uid {st.st_uid}, not this user or root: chown it"
    return None


def windows_untrusted_reason(path: Path) -> str | None:
    """untrusted_reason on Windows: broad principals in the file's DACL, by SID. An ACL
    that cannot be read or parsed is a reason too (never trusted by default)."""
    try:
        broad = winacl.broad_writers(winacl.file_sddl(str(path)))
    except OSError as exc:
        return f"cannot read the permissions of {path}: {exc.strerror or exc}"
    except winacl.BadSddl as exc:
        return f"cannot understand the permissions of {path} ({exc}): restrict it with icacls"
    if not broad:
        return None
    fix = "restrict it with icacls (docs/operations.md, Windows)"
    return f"{path} can be changed by {'; '.join(broad)}: {fix}"


def key_hint(detail: str, keys_dir: Path) -> str:
    """What to do about agent keys that cannot be used: missing ones come from `init`;
    a mode that is too open is fixed with chmod; `init --force` makes new keys, which
    must then be enrolled again (the relay knows only the old public keys)."""
    if detail.endswith(": missing"):
        return f"{detail}: run `writeback-agent init` first"
    if "too open" in detail:
        return f"{detail}: chmod 600 {keys_dir}/*.key"
    return (
        f"{detail}: restore the keys from a backup, or make new ones with "
        "`writeback-agent init --force` and enroll again with a new code"
    )


def unusable_data_dir(data_dir: Path) -> str | None:
    """Why this user cannot use data_dir (the classic: `init` and `enroll` ran as root
    and nobody gave the directory to the service account), or None."""
    try:
        if not data_dir.exists():
            return None  # `init` or the first start creates it
        if os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
            return None
        owner = data_dir.stat().st_uid if os.name == "posix" else None
    except PermissionError:
        owner = None
    if os.name != "posix":
        fix = "grant the service account full control (icacls, docs/operations.md)"
    else:
        try:
            me = getpass.getuser()
        except (KeyError, OSError):  # a uid with no passwd entry (some containers)
            me = str(os.getuid())
        fix = f"chown -R {me} {data_dir}"
    whose = f" (it belongs to uid {owner})" if owner is not None else ""
    return f"data_dir {data_dir} cannot be used by this user{whose}: {fix}"


def give_to_data_dir_owner(data_dir: Path) -> list[Path]:
    """Root ran `keys rotate` or `enroll` on a data dir the service account owns: hand
    the files root just wrote to that account, or the running agent could not read
    its own new key (and the relay would already seal requests to it). POSIX only;
    a no-op unless running as root on a directory root does not own."""
    if os.name != "posix" or os.geteuid() != 0:
        return []
    st = data_dir.stat()
    if st.st_uid == 0:
        return []
    changed = []
    for path in [data_dir, *data_dir.rglob("*")]:
        if path.is_symlink():
            continue
        info = path.stat()
        if (info.st_uid, info.st_gid) != (st.st_uid, st.st_gid):
            os.chown(path, st.st_uid, st.st_gid)
            changed.append(path)
    return changed


def check_trusted(path: Path) -> None:
    reason = untrusted_reason(path)
    if reason is not None:
        raise UntrustedFile(reason)


def restrict_data_dir(data_dir: Path) -> list[Path]:
    """Make data_dir 0700 and everything in it 0700/0600 (or the Windows ACL); returns
    what was changed. Called at every start, so an older install is tightened too."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "nt":
        subprocess.run(  # noqa: S603 - fixed program and arguments
            icacls_restrict(str(data_dir), windows_account(), directory=True),
            capture_output=True,
            check=True,
        )
        return [data_dir]
    changed = []
    for path in [data_dir, *sorted(data_dir.rglob("*"))]:
        if path.is_symlink():
            continue
        want = 0o700 if path.is_dir() else 0o600
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != want:
            path.chmod(want)
            changed.append(path)
    return changed


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (so SQLite's -wal and -shm
    files, which copy the database's mode, are 0600 from the first byte)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
