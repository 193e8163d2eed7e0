"""An agent that leases in batches (relay.lease_batch): one long-poll serves all idle
workers; every request is answered, and each user gets the password it asked for,
also when write permits are asked together (relay.permit_batch) and results posted
together (relay.result_batch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess


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
