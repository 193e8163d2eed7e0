"""The relay's in-process cache of tenants and agents, with two relay processes on one
database: a change made through one is seen by the other within cache_ttl."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.transports.base import AuthenticationFailed
from tests.servers.relay import start_relay


def test_changes_reach_another_relay_within_the_cache_ttl(tmp_path: Path) -> None:
    first = start_relay(tmp_path / "shared", cache_ttl=1)
    second = start_relay(tmp_path / "shared", cache_ttl=1)
    try:
        tenant, token = first.create_tenant()
        with second.portal(token) as portal:  # a new token works at once elsewhere
            assert portal.agents("default") == []
        agent = first.enroll_agent(tenant)
        agent.base_url = second.base_url
        with agent.transport() as transport:
            assert transport.lease(wait=0) is None  # cached on the second relay now
            first.remove_agent(agent.agent_id)
            with pytest.raises(AuthenticationFailed):  # removed on this relay: at once
                agent.base_url = first.base_url
                with agent.transport() as on_first:
                    on_first.lease(wait=0)
            time.sleep(1.2)
            with pytest.raises(AuthenticationFailed) as info:  # and on the other one
                transport.lease(wait=0)
            assert info.value.code == "agent_removed"
    finally:
        first.stop()
        second.stop()
