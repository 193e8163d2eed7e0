"""One relay for the e2e session; per directory kind, one enrolled agent whose
agent.toml routes NetBIOS-style domains to differently scoped views of the same
real directory, so every not_managed rule can be produced on purpose:

    WB\\login       the directory, scope = OU=People, denied group (nested), admins protected
    OFF\\login      writeback switched off for this directory
    ALLOW\\login    only members of the allowed group
    LIMITED\\login  a service account without reset rights (access_denied)
    DEAD\\login     a DC that does not answer (directory_unavailable)
    NOWHERE\\login  no directory serves it (not_managed / no_directory)
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.logging import configure_logging
from tests.e2e import harness
from tests.e2e.harness import AgentSystem, directory_entry, parent_dn
from tests.servers._process import free_port
from tests.servers.base import DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess, start_relay
from tests.servers.slapd import PROTECTED_GROUP


@pytest.fixture(scope="session")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path_factory.mktemp("relay"), lease_timeout=5, presence_timeout=5)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def log_buffer() -> io.StringIO:
    """Everything the in-process agents log, as the JSON lines an operator would see."""
    buffer = io.StringIO()
    harness.LOG_STREAM = buffer
    configure_logging(level="debug", fmt="json", stream=buffer)
    return buffer


@dataclass
class Scenario:
    system: AgentSystem
    env: DirectoryEnv
    allowed_group: str
    denied_group: str
    denied_inner_group: str


@pytest.fixture(scope="session", params=["active_directory", "openldap"])
def scenario(
    request: pytest.FixtureRequest,
    relay: RelayProcess,
    tmp_path_factory: pytest.TempPathFactory,
    log_buffer: io.StringIO,
) -> Iterator[Scenario]:
    env: DirectoryEnv = request.getfixturevalue(
        {"active_directory": "samba_env", "openldap": "slapd_env"}[request.param]
    )
    root = tmp_path_factory.mktemp(f"e2e-{request.param}")
    secrets_dir = root / "secrets"
    secrets_dir.mkdir(mode=0o700)
    tag = unique_login("g")
    allowed = env.create_group(f"allowed-{tag}", [])
    inner = env.create_group(f"inner-{tag}", [])
    denied = env.create_group(f"denied-{tag}", [inner])  # membership through `inner` is nested
    # AD marks protected accounts itself (adminCount=1); OpenLDAP has no such flag, so
    # the operator lists a group, as the env does for `protected=True` users.
    protected_groups = [PROTECTED_GROUP] if env.kind == "openldap" else []
    base = env.settings
    domain_root = parent_dn(env.base_dn)
    directories = [
        directory_entry(
            base,
            secrets_dir,
            name="main",
            base_dns=[domain_root],
            domains=["WB"],
            default=True,
            scope={
                "base_dns": [env.base_dn],
                "denied_groups": [denied],
                "protected_groups": protected_groups,
            },
        ),
        directory_entry(
            base, secrets_dir, name="off", domains=["OFF"], scope={"writeback_enabled": False}
        ),
        directory_entry(
            base, secrets_dir, name="allow", domains=["ALLOW"], scope={"allowed_groups": [allowed]}
        ),
        directory_entry(env.limited_settings, secrets_dir, name="limited", domains=["LIMITED"]),
        directory_entry(
            base,
            secrets_dir,
            name="dead",
            domains=["DEAD"],
            connect_timeout=1.0,
            urls=[f"ldaps://127.0.0.1:{free_port()}"],
        ),
    ]
    system = AgentSystem.create(root, relay, directories)
    system.start_agent()
    yield Scenario(system, env, allowed, denied, inner)
    system.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "e2e":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _agents_log_to_buffer(log_buffer: io.StringIO) -> io.StringIO:
    """Every e2e test's in-process agents log into the buffer the secrets test reads."""
    return log_buffer
