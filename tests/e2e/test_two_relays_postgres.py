"""Several relays, one PostgreSQL database: the agent talks to relay A, the portal to
relay B, and resets go through end to end into the real directory.

Both relays re-check the store only every 10 s, and the agent re-polls every 5 s, so a
reset answered within a few seconds was carried by NOTIFY in both directions: B's
submit woke the agent's lease long-poll on A, and A's stored result woke the portal's
result long-poll on B.
"""

from __future__ import annotations

import statistics
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.postgres import PostgresServer
from tests.servers.relay import RelayProcess, start_replicas

pytestmark = pytest.mark.postgres
RECHECK = 10.0
INITIAL = "Initial-Pass-1"


@pytest.fixture(scope="module")
def relays(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    dsn = postgres_server.create_database()
    root = tmp_path_factory.mktemp("pg-relays")
    started = start_replicas(root, dsn, ("agents", "portal"), log_level="debug",
                             poll_interval=RECHECK, lease_timeout=5, presence_timeout=5)
    yield started[0], started[1]
    for relay in started:
        relay.stop()


def test_agent_on_one_relay_portal_on_the_other(
    relays: tuple[RelayProcess, RelayProcess], directory: DirectoryEnv, tmp_path: Path
) -> None:
    agents_relay, portal_relay = relays
    system = AgentSystem.create(
        tmp_path / "sys", agents_relay,
        [directory_entry(directory.settings, tmp_path, name="main", default=True)],
        portal_relay=portal_relay,
    )
    config = tomllib.loads(system.config.read_text())
    config["relay"]["lease_wait_seconds"] = 5.0
    system.config.write_text(tomli_w.dumps(config))
    users = [unique_login("p") for _ in range(4)]
    for login in users:
        directory.create_user(login, INITIAL)
    time.sleep(1.0)  # requests issued in a later second than the password was set
    took: list[float] = []
    try:
        with system.running():
            time.sleep(1.0)  # the workers' long-polls are parked on relay A
            for n, login in enumerate(users):
                started = time.monotonic()
                result = system.portal.send("reset", login, new_password=f"Two-Relays-{n}-Ok",
                                            timeout=RECHECK * 3)
                took.append(time.monotonic() - started)
                assert result.status == "succeeded", result
    finally:
        system.close()
    for n, login in enumerate(users):
        assert directory.bind(login, f"Two-Relays-{n}-Ok") is BindOutcome.OK
    print(f"\n{directory.kind}: reset via relay B, agent on relay A: median "
          f"{statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms")
    assert statistics.median(took) < RECHECK / 2
    # Who did what: the portal's relay queued and answered, the agents' relay leased.
    assert '"request.queued"' in portal_relay.log() and '"request.leased"' not in portal_relay.log()
    assert '"request.leased"' in agents_relay.log() and '"result.stored"' in agents_relay.log()
    assert '"permit.granted"' in agents_relay.log()  # each write was permitted first
