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


@pytest.mark.parametrize("breakage", ["ca_file_deleted", "ca_file_garbage"])
def test_a_broken_directory_setting_is_answered_not_lost(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path, breakage: str
) -> None:
    """Settings are validated at load time (a missing ca_file or a negative timeout
    refuse to start), so the fault comes at run time: the CA file vanishes under the
    running agent, or holds no certificate. Neither is a directory error the connectors
    translate; both must still be answered."""
    ca_file = tmp_path / "broken-ca.pem"
    ca_file.write_bytes(Path(str(slapd_env.settings.ca_file)).read_bytes())
    directories = [
        directory_entry(slapd_env.settings, tmp_path, name="main", default=True),
        directory_entry(slapd_env.settings, tmp_path, name="broken", domains=["BROKEN"],
                        ca_file=str(ca_file)),
    ]
    system = AgentSystem.create(tmp_path / "broken", relay, directories)
    try:
        journal = system.settings().journal_path
        with system.running():
            if breakage == "ca_file_deleted":
                ca_file.unlink()
            else:
                ca_file.write_text("this is not a certificate\n")
            login = unique_login("x")
            slapd_env.create_user(login, "Initial-Pass-1")
            for attempt in range(2):  # the second proves nothing is stuck
                request = system.portal.request(
                    "reset", f"BROKEN\\{login}", new_password=f"Broken-Pass-{attempt}x"
                )
                system.portal.submit(request)
                result = system.portal.wait(request, timeout=20)
                # A vanished file is an unexpected exception (internal_error); a file
                # without a certificate fails the TLS set-up like an unreachable DC.
                expected = "internal_error" if breakage == "ca_file_deleted" else (
                    "directory_unavailable")
                assert result.status == expected, result
                assert "Try again later" in result.message
                assert _journal(journal, request.id) == ("done", expected)
            # The healthy directory is served as before.
            ok = system.portal.send("reset", login, new_password="Healthy-Pass-9x", timeout=20)
            assert ok.status == "succeeded", ok
    finally:
        system.close()
