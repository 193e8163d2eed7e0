"""Issue 8 item 3: an unexpected exception anywhere in the pipeline is answered with a
signed internal_error, the journal row is closed and the request never gets stuck."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess


def _journal(path: Path, request_id: str) -> tuple[str, str] | None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute(
            "SELECT state, status FROM requests WHERE id = ?", (request_id,)
        ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


@pytest.mark.parametrize(
    "broken",
    [
        {"ca_file": "/nonexistent/writeback-ca.pem"},
        {"connect_timeout": -1},
    ],
)
def test_a_broken_directory_setting_is_answered_not_lost(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path, broken: dict[str, object]
) -> None:
    directories = [
        directory_entry(slapd_env.settings, tmp_path, name="main", default=True),
        directory_entry(slapd_env.settings, tmp_path, name="broken", domains=["BROKEN"], **broken),
    ]
    system = AgentSystem.create(tmp_path / "broken", relay, directories)
    try:
        with system.running():
            login = unique_login("x")
            slapd_env.create_user(login, "Initial-Pass-1")
            for attempt in range(2):  # the second proves nothing is stuck
                request = system.portal.request(
                    "reset", f"BROKEN\\{login}", new_password=f"Broken-Pass-{attempt}x"
                )
                system.portal.submit(request)
                result = system.portal.wait(request, timeout=20)
                assert result.status == "internal_error", result
                assert "Try again later" in result.message
                journal = system.settings().journal_path
                assert _journal(journal, request.id) == ("done", "internal_error")
            # The healthy directory is served as before.
            ok = system.portal.send("reset", login, new_password="Healthy-Pass-9x", timeout=20)
            assert ok.status == "succeeded", ok
    finally:
        system.close()
