"""A Python the service user (nobody, uid 65534) can run our code with, for the tests
that run the agent as another user through setpriv.

The checkout may sit in a directory only root can enter (a CI clone made with
`mktemp -d` is 0700). Then nobody can import anything from it, so the code and the
virtualenv are laid out again in a world-readable temp directory: hard links where the
file system allows (no data copied; git and the venv leave the files 0644/0755), a
copy otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PACKAGES = ("agent", "connectors", "wire", "cloud")


@dataclass(frozen=True)
class NobodyPython:
    python: str  # the interpreter to run under setpriv
    pythonpath: str  # where our packages are

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": self.pythonpath}
        env.pop("NOTIFY_SOCKET", None)
        return env


def _works(candidate: NobodyPython) -> bool:
    proc = subprocess.run(
        [*NOBODY, candidate.python, "-c", "import agent.cli, ldap3"],
        capture_output=True, check=False, cwd="/", env=candidate.env(), timeout=60,
    )
    return proc.returncode == 0


def _lay_out(dest: Path) -> NobodyPython:
    venv = Path(sys.prefix)
    for source, target in [(REPO / p, dest / p) for p in PACKAGES] + [(venv, dest / "venv")]:
        try:
            subprocess.run(["cp", "-al", str(source), str(target)],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError:  # another file system: copy
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o555)
    python = dest / "venv" / "bin" / Path(sys.executable).name
    return NobodyPython(str(python), str(dest))


@pytest.fixture(scope="session")
def nobody_python() -> Iterator[NobodyPython]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")  # CI runs as root
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run as another user")
    here = NobodyPython(sys.executable, str(REPO))
    if _works(here):
        yield here
        return
    dest = Path(tempfile.mkdtemp(prefix="wb-nobody-", dir="/tmp"))
    try:
        dest.chmod(0o755)
        laid_out = _lay_out(dest)
        assert _works(laid_out), "nobody cannot run the laid-out copy either"
        yield laid_out
    finally:
        shutil.rmtree(dest, ignore_errors=True)
