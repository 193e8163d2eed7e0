"""Fixtures over a real relay process (tests/servers/relay.py).

`relay` is one process per session with default timeouts; tests that need short
lease/presence timeouts start their own with `relay_factory(lease_timeout=1)`.
Each test gets a fresh tenant, so tests never see each other's queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.relay.client import PortalClient
from tests.servers.relay import EnrolledAgent, RelayProcess, start_relay


@pytest.fixture(scope="session")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = start_relay(tmp_path_factory.mktemp("relay"))
    yield process
    process.stop()


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def factory(log_level: str = "warning", **settings: Any) -> RelayProcess:
        process = start_relay(tmp_path / f"relay{len(started)}", log_level=log_level, **settings)
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


@pytest.fixture
def tenant(relay: RelayProcess) -> tuple[str, str]:
    """(tenant id, portal API token) of a fresh tenant."""
    return relay.create_tenant()


@pytest.fixture
def portal(relay: RelayProcess, tenant: tuple[str, str]) -> Iterator[PortalClient]:
    with relay.portal(tenant[1]) as client:
        yield client


@pytest.fixture
def enroll_agent(
    relay: RelayProcess, tenant: tuple[str, str]
) -> Iterator[Callable[..., EnrolledAgent]]:
    """Enroll agents in the test's tenant; their transports are closed at the end."""
    transports: list[Any] = []

    def make(group: str = "default", **kwargs: Any) -> EnrolledAgent:
        agent = relay.enroll_agent(tenant[0], group, **kwargs)
        original = agent.transport

        def transport(**options: Any) -> Any:
            t = original(**options)
            transports.append(t)
            return t

        agent.transport = transport  # type: ignore[method-assign]
        return agent

    yield make
    for t in transports:
        t.close()
