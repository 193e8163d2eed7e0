"""An agent that leases in batches (relay.lease_batch): one long-poll serves all idle
workers; every request is answered, and each user gets the password it asked for,
also when write permits are asked together (relay.permit_batch) and results posted
together (relay.result_batch). And the portal's side of a burst: its page threads
share their calls, so a burst does not use up the tenant's long-polls."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from agent.metrics import Metrics
from cloud.portal.agents import AgentGateway, status_of
from cloud.portal.settings import PortalSettings
from cloud.relay.client import PortalClient
from cloud.relay.portal_calls import PortalCalls
from cloud.sdk import PortalSigner, Status, verify_result
from tests.e2e.harness import AgentSystem, directory_entry
from tests.e2e.proxy import CountingProxy
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


@contextlib.contextmanager
def _scraped(metrics: Metrics, directory: str) -> Iterator[list[float]]:
    """`writeback_directory_writing` of `directory`, as /metrics shows it every 20 ms."""
    pattern = re.compile(
        r"writeback_directory_writing\{directory=" + re.escape(f'"{directory}"') + r"\} (\S+)"
    )
    seen: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.wait(0.02):
            found = pattern.search(metrics.render()[0].decode())
            seen.append(float(found.group(1)) if found else -1.0)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        yield seen
    finally:
        done.set()
        scraper.join()


def test_a_busy_directory_answers_sixteen_users_in_fewer_calls(
    relay: RelayProcess, samba_env: DirectoryEnv, tmp_path: Path
) -> None:
    """Sixteen portal users at a time on Samba AD, which writes one password at a time:
    while several writes wait at the DC, the agent holds answers, leases and permits a
    little so they share their calls (agent/backlog.py), and the portal's calls follow.
    Counted at a proxy in front of the relay: each reset makes fewer than 2 HTTP calls
    (about 4, each answer alone, without the hold), and each user has the password
    it asked for."""
    proxy = CountingProxy(("127.0.0.1", int(relay.base_url.rsplit(":", 1)[1])))
    url = f"http://127.0.0.1:{proxy.port}"
    system = AgentSystem.create(
        tmp_path / "busy", relay,
        [directory_entry(samba_env.settings, tmp_path, name="ad", default=True)],
        workers=16,  # the agent's default
        directory_deadline_seconds=30.0,
        relay={"url": url, "lease_wait_seconds": 5.0, "timeout_seconds": 20.0},
    )
    users, rounds = 16, 4
    logins = [unique_login("busy") for _ in range(users * rounds)]
    for login in logins:
        samba_env.create_user(login, "Initial-Pass-1x")
    client = PortalClient(url, system.portal.token, timeout=30)
    calls = PortalCalls(client)
    try:
        with system.running():
            system.portal.wait_online()
            agents = system.portal.agents()
            requests = [
                system.portal.request("reset", login, new_password=f"Busy-{n}-Pass-x")
                for n, login in enumerate(logins)
            ]
            before = proxy.counted()

            def user(first: int) -> list[Status]:  # one person after another at this page
                statuses: list[Status] = []
                for request in requests[first :: users]:
                    raw = calls.send(request.to_bytes(), request.id, timeout=120)
                    result = verify_result(raw, request=request, trusted_agents=agents)
                    statuses.append(result.status)
                return statuses

            assert system.agent is not None
            metrics = system.agent.metrics
            with _scraped(metrics, "ad") as backlog, ThreadPoolExecutor(users) as pool:
                answers = [s for statuses in pool.map(user, range(users)) for s in statuses]
            counted = proxy.counted() - before
            after = metrics.render()[0].decode()
        assert answers == [Status.SUCCEEDED] * len(logins)
        for n, login in enumerate(logins):
            assert samba_env.bind(login, f"Busy-{n}-Pass-x") is BindOutcome.OK
        # The operator sees the DC's backlog: at or past the hold depth (4) while busy.
        assert max(backlog) >= 4, backlog
        assert 'writeback_directory_writing{directory="ad"} 0.0' in after
        per_reset = {route: n / len(logins) for route, n in counted.items()}
        print("HTTP calls per reset:", {r: round(n, 2) for r, n in sorted(per_reset.items())})
        assert per_reset.get("POST /v1/agent/results/batch", 0) <= 0.6, per_reset
        # The calls a reset makes; the heartbeat comes by the clock, not per reset.
        per_reset.pop("POST /v1/agent/heartbeat", None)
        assert sum(per_reset.values()) < 2.0, per_reset
    finally:
        calls.close()
        client.close()
        system.close()
        proxy.close()
