"""docs/relay.md, followed with the real commands as separate processes: serve, tenant
add, the portal-key one-liner, portal-key add, enrollment-code into a file, then the
agent's init, enroll with the code on stdin, and check; then `agent list` as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import tomli_w

from tests.e2e.harness import directory_entry
from tests.servers.base import DirectoryEnv
from tests.servers.relay import start_relay

RELAY_MD = Path(__file__).resolve().parents[2] / "docs" / "relay.md"
BIN = Path(sys.executable).parent


def run(*args: str, stdin: Path | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> str:
    with (stdin.open() if stdin else open(os.devnull)) as feed:
        result = subprocess.run(args, stdin=feed, capture_output=True, text=True, cwd=cwd,
                                env=env, timeout=60, check=False)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def test_relay_walkthrough_to_an_enrolled_agent(slapd_env: DirectoryEnv, tmp_path: Path) -> None:
    doc = RELAY_MD.read_text(encoding="utf-8")
    one_liner = re.search(r"    python -c '(.*?)'\n", doc)
    assert one_liner, "the portal key one-liner"
    assert doc.index("portal-key add --tenant") < doc.index("enrollment-code --tenant")

    relay = start_relay(tmp_path / "relay")  # writeback-relay serve ... --admin-token-file
    try:
        env = {**os.environ, "WRITEBACK_RELAY_DB": str(relay.db_path)}
        token = run(str(BIN / "writeback-relay"), "tenant", "add", "acme", env=env).strip()
        assert len(token) >= 16
        portal = tmp_path / "portal"
        portal.mkdir()
        kid, key = run(sys.executable, "-c", one_liner.group(1), cwd=portal).split()
        assert (portal / "portal.key").stat().st_mode & 0o077 == 0
        run(str(BIN / "writeback-relay"), "portal-key", "add", "--tenant", "acme", "--kid", kid,
            "--public-key", key, env=env)
        code_file = tmp_path / "enrollment-code.txt"
        code_file.write_text(run(str(BIN / "writeback-relay"), "enrollment-code", "--tenant",
                                 "acme", "--group", "hq", "--ttl", "3600", env=env))

        agent = str(BIN / "writeback-agent")
        config = tmp_path / "agent.toml"
        run(agent, "-c", str(config), "init", "--data-dir", str(tmp_path / "data"),
            "--relay-url", relay.base_url)
        config.write_text(tomli_w.dumps({
            "data_dir": str(tmp_path / "data"),
            "relay": {"url": relay.base_url},
            "directories": [directory_entry(slapd_env.settings, tmp_path, name="ldap")],
        }))
        out = run(agent, "-c", str(config), "enroll", stdin=code_file)
        assert "tenant acme, group hq; trusting 1 portal key(s)" in out
        check = run(agent, "-c", str(config), "check")
        assert f"[ok  ] relay: {relay.base_url} accepts this agent (1 portal key(s))" in check
        assert "all checks passed" in check

        listing = re.search(r"`writeback-relay (agent list --tenant acme)", doc)
        assert listing, "the agent list command"
        agents = run(str(BIN / "writeback-relay"), *listing.group(1).split(), env=env)
        agent_id = out.split("enrolled as agent ")[1].split()[0]
        assert agent_id in agents and " hq " in agents
    finally:
        relay.stop()
