"""An agent that leases in batches (relay.lease_batch): one long-poll serves all idle
workers; every request is answered, and each user gets the password it asked for,
also when write permits are asked together (relay.permit_batch) and results posted
together (relay.result_batch). And the portal's side of a burst: its page threads
share their calls, so a burst does not use up the tenant's long-polls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from cloud.portal.agents import AgentGateway, status_of
from cloud.portal.settings import PortalSettings
from cloud.sdk import PortalSigner, Status
from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess, start_relay


@pytest.mark.parametrize(("permit_batch", "result_batch"), [(1, 1), (8, 16)])
def test_batched_leasing_serves_a_burst(
    relay: RelayProcess,
    slapd_env: DirectoryEnv,
    tmp_path: Path,
    permit_batch: int,
    result_batch: int,
) -> None:
    system = AgentSystem.create(
        tmp_path / "batch",
        relay,
        [directory_entry(slapd_env.settings, tmp_path, name="main", default=True)],
        workers=4,
        relay={
            "url": relay.base_url,
            "lease_wait_seconds": 2.0,
            "timeout_seconds": 10.0,
            "lease_batch": 4,
            "permit_batch": permit_batch,
            "result_batch": result_batch,
        },
    )
    try:
        with system.running():
            logins = [unique_login("b") for _ in range(12)]
            for login in logins:
                slapd_env.create_user(login, "Initial-Pass-1")
            requests = [
                system.portal.request("reset", login, new_password=f"Batch-{n}-Pass-x")
                for n, login in enumerate(logins)
            ]
            for request in requests:
                system.portal.submit(request)
            for request in requests:
                assert system.portal.wait(request, timeout=60).status == "succeeded"
            for n, login in enumerate(logins):
                assert slapd_env.bind(login, f"Batch-{n}-Pass-x") is BindOutcome.OK
    finally:
        system.close()


def test_a_burst_of_portal_users_shares_the_tenants_long_polls(
    slapd_env: DirectoryEnv, tmp_path: Path
) -> None:
    """The self-service portal's page threads (cloud/portal/agents.py) share their
    relay calls: twelve users resetting at once hold a few long-polls, not twelve, so
    a tenant whose portals are allowed 8 refuses none of them."""
    relay = start_relay(tmp_path / "relay", max_long_polls_per_tenant=8)
    signer = PortalSigner.generate()
    system = AgentSystem.create(
        tmp_path / "agent", relay,
        [directory_entry(slapd_env.settings, tmp_path, name="main", default=True)],
        signer=signer,
    )
    settings = PortalSettings(
        tenant=system.portal.tenant, relay_url=relay.base_url, relay_token_file=tmp_path / "t",
        signing_key_file=tmp_path / "k", data_dir=tmp_path, secret_key_file=tmp_path / "s",
        user_id_kind="login", agent_timeout_seconds=60.0,
    )
    gateway = AgentGateway(settings, relay.portal(system.portal.token, timeout=30), signer,
                           structlog.get_logger())
    logins = [unique_login("burst") for _ in range(12)]
    for login in logins:
        slapd_env.create_user(login, "Initial-Pass-1")
    try:
        with system.running():
            system.portal.wait_online()
            with ThreadPoolExecutor(len(logins)) as pool:
                answers = list(pool.map(
                    lambda n: gateway.send("reset", logins[n],
                                           new_password=SecretStr(f"Burst-{n}-Pass-x")),
                    range(len(logins)),
                ))
        assert [status_of(a) for a in answers] == [Status.SUCCEEDED] * len(logins)
        for n, login in enumerate(logins):
            assert slapd_env.bind(login, f"Burst-{n}-Pass-x") is BindOutcome.OK
    finally:
        gateway.close()
        system.close()
        relay.stop()
