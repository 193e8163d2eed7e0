"""`writeback-relay serve` on an install without the cloud extra: one line saying what
to install, exit 2, no traceback (issue 12)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BLOCK_WEB_STACK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("uvicorn", "fastapi", "starlette", "limits"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from cloud.relay.cli import main
raise SystemExit(main(sys.argv[2:] or ["serve", "--db", sys.argv[1]]))
"""


def test_serve_without_the_cloud_extra(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_WEB_STACK, str(tmp_path / "relay.sqlite3")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert re.fullmatch(
        r"writeback-relay serve: (uvicorn|fastapi|starlette) is not installed: "
        r"pip install 'writeback-agent\[cloud\]'\n",
        result.stderr,
    ), result.stderr


def test_admin_commands_and_version_need_no_cloud_extra(tmp_path: Path) -> None:
    """A plain `pip install writeback-agent` (no extras) still runs the relay's admin
    commands against its database, and --version."""
    db = str(tmp_path / "relay.sqlite3")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", BLOCK_WEB_STACK, db, *args],
            capture_output=True, text=True, timeout=60, check=False,
        )

    assert run("--version").stdout.startswith("writeback-relay ")
    added = run("--db", db, "tenant", "add", "acme")
    assert added.returncode == 0, added.stderr
    assert run("--db", db, "agent", "list", "--tenant", "acme").stdout.strip() == "no agents"
