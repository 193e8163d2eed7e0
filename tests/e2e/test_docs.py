"""The README's portal example, run as written (a separate Python process, the code
block verbatim) against a real relay, a real enrolled agent and slapd: tenant `acme`,
group `hq`, user alice@acme.example, as the example names them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from cloud.sdk import PortalSigner
from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import start_relay

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_portal_example() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, "no python block in README.md"
    return match.group(1)


def test_readme_portal_example_runs_as_written(slapd_env: DirectoryEnv, tmp_path: Path) -> None:
    relay = start_relay(tmp_path / "relay")
    signer = PortalSigner.generate()
    portal_dir = tmp_path / "portal"
    portal_dir.mkdir()
    signer.save(portal_dir / "portal.key")
    system = AgentSystem.create(
        tmp_path / "agent", relay,
        [directory_entry(slapd_env.settings, tmp_path, name="ldap", default=True)],
        group="hq", tenant="acme", signer=signer,
    )
    try:
        login = unique_login("alice")
        slapd_env.create_user(login, "Initial-Pass-1", mail="alice@acme.example")
        time.sleep(1)
        token = system.portal.api_token
        with system.running():
            result = subprocess.run(
                [sys.executable, "-c", readme_portal_example()],
                cwd=portal_dir,
                env={**os.environ, "RELAY_URL": relay.base_url, "RELAY_API_TOKEN": token,
                     "NEW_PASSWORD": "Readme-Pass-77"},
                capture_output=True, text=True, timeout=120, check=False,
            )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("succeeded "), result.stdout
        assert slapd_env.bind(login, "Readme-Pass-77") is BindOutcome.OK
    finally:
        system.close()
        relay.stop()
