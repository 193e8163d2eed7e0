"""Two relay processes on one PostgreSQL database, over real HTTP.

The relays re-check the store only every 10 s here (`poll_interval`), so a long-poll
that returns sooner was woken by the other relay's NOTIFY, not by its own polling.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from agent.transports.base import Lease, LeaseLost
from tests.servers.postgres import PostgresServer
from tests.servers.relay import RelayProcess, fake_envelope, start_replicas
from wire.permits import PermitDecision

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
RECHECK = 10.0
ROUNDS = 10
LEASE = 2.0
GRACE = 1.0
ALICE = hashlib.sha256(b"alice").hexdigest()


@pytest.fixture(scope="module")
def replicas(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    """Relays A and B on one database, started at once (tests use their own tenants)."""
    dsn = postgres_server.create_database()
    root = tmp_path_factory.mktemp("replicas")
    started = start_replicas(root, dsn, log_level="info", poll_interval=RECHECK,
                             lease_timeout=LEASE, late_answer_grace=GRACE)
    try:
        yield started[0], started[1]
    finally:
        for relay in started:
            relay.stop()
    for relay in started:
        assert "postgresql://" not in relay.log()  # the DSN is never logged


def _timed(fn: object) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn()  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            out["error"] = exc
        out["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _report(what: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    print(f"\n{what}: median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms "
          f"over {len(ms)} (re-check every {RECHECK:.0f} s)")


def test_a_submit_on_one_relay_wakes_an_agent_polling_the_other(
    replicas: tuple[RelayProcess, RelayProcess],
) -> None:
    agents_relay, portal_relay = replicas
    tenant, token = portal_relay.create_tenant()
    agent = agents_relay.enroll_agent(tenant)  # enrolled on A with a code made on B's data
    latencies: list[float] = []
    with agent.transport() as transport, portal_relay.portal(token) as portal:
        for _ in range(ROUNDS):
            thread, out = _timed(lambda t=transport: t.lease(wait=RECHECK * 2))
            time.sleep(0.3)  # the long-poll is parked on relay A
            request_id = portal.submit(fake_envelope(tenant))
            submitted = time.monotonic()
            thread.join(timeout=RECHECK * 3)
            assert "error" not in out, out
            lease = out["value"]
            assert isinstance(lease, Lease) and lease.request_id == request_id
            latencies.append(float(out["at"]) - submitted)  # type: ignore[arg-type]
            transport.complete(lease, b'{"status":"succeeded"}')
    _report("submit on B -> lease long-poll on A returns", latencies)
    assert statistics.median(latencies) < RECHECK / 4


def test_a_result_on_one_relay_wakes_the_portal_waiting_on_the_other(
    replicas: tuple[RelayProcess, RelayProcess],
) -> None:
    agents_relay, portal_relay = replicas
    tenant, token = portal_relay.create_tenant()
    agent = agents_relay.enroll_agent(tenant)
    latencies: list[float] = []
    with agent.transport() as transport, portal_relay.portal(token) as portal:
        for n in range(ROUNDS):
            request_id = portal.submit(fake_envelope(tenant))
            lease = transport.lease(wait=RECHECK * 2)
            assert lease is not None and lease.request_id == request_id
            thread, out = _timed(lambda r=request_id: portal.wait_result(r, timeout=RECHECK * 2))
            time.sleep(0.3)  # the result long-poll is parked on relay B
            body = b'{"status":"succeeded","n":%d}' % n
            transport.complete(lease, body)
            completed = time.monotonic()
            thread.join(timeout=RECHECK * 3)
            assert out.get("value") == body, out
            latencies.append(float(out["at"]) - completed)  # type: ignore[arg-type]
    _report("result on A -> result long-poll on B returns", latencies)
    assert statistics.median(latencies) < RECHECK / 4


def test_agents_on_both_relays_never_share_a_request(
    replicas: tuple[RelayProcess, RelayProcess],
) -> None:
    first, second = replicas
    tenant, token = first.create_tenant()
    agents = [first.enroll_agent(tenant).transport(), second.enroll_agent(tenant).transport()]
    total = 150
    with first.portal(token) as portal_a, second.portal(token) as portal_b:
        ids = {(portal_a if n % 2 else portal_b).submit(fake_envelope(tenant))
               for n in range(total)}
        leased: list[list[str]] = [[], []]
        barrier = threading.Barrier(2)

        def work(n: int) -> None:
            barrier.wait()
            while (lease := agents[n].lease(wait=0)) is not None:
                leased[n].append(lease.request_id)
                agents[n].complete(lease, b'{"status":"succeeded"}')

        threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.monotonic() - started
        print(f"\n{total} requests, an agent on each relay: {len(leased[0])}/{len(leased[1])} "
              f"split, {total / elapsed:.0f} lease+complete/s over HTTP")
        counts = Counter(leased[0] + leased[1])
        assert set(counts) == ids and max(counts.values()) == 1
        assert leased[0] and leased[1]
        for request_id in list(ids)[:5]:  # every result is readable through either relay
            assert portal_a.wait_result(request_id, timeout=5) == b'{"status":"succeeded"}'
    for transport in agents:
        transport.close()


def test_write_permits_hold_across_relays(replicas: tuple[RelayProcess, RelayProcess]) -> None:
    """The permit is decided in the shared database: a redelivery through the other
    relay is in doubt, the first writer's late answer wins, and the newer of two
    requests for one user is the one written, whichever relay each agent uses."""
    first, second = replicas
    tenant, token = second.create_tenant()
    on_a, on_b = first.enroll_agent(tenant).transport(), second.enroll_agent(tenant).transport()
    with second.portal(token) as portal:
        request_id = portal.submit(fake_envelope(tenant))
        lease = on_a.lease(wait=5)
        assert lease is not None
        permit = on_a.permit(lease, ALICE, ordered=True)
        assert permit.decision is PermitDecision.GRANTED
        time.sleep(LEASE + 0.2)  # a's lease runs out mid-write
        taken = on_b.lease(wait=0)
        assert taken is not None and taken.request_id == request_id
        # a may still post its answer: b waits out the grace, then it is in doubt.
        assert on_b.permit(taken, ALICE, ordered=True).decision is PermitDecision.BUSY
        time.sleep(GRACE + 0.1)
        assert on_b.permit(taken, ALICE, ordered=True).decision is PermitDecision.IN_DOUBT
        on_a.complete(permit.lease, b'{"status":"succeeded","by":"a"}')
        with pytest.raises(LeaseLost):
            on_b.complete(taken, b'{"status":"in_doubt","by":"b"}')
        assert portal.wait_result(request_id, timeout=5) == b'{"status":"succeeded","by":"a"}'

        older = portal.submit(fake_envelope(tenant))
        newer = portal.submit(fake_envelope(tenant))
        l_old, l_new = on_b.lease(wait=5), on_a.lease(wait=5)
        assert l_old is not None and l_new is not None
        assert (l_old.request_id, l_new.request_id) == (older, newer)
        # The user's last write closed after these leases began: reserved, then confirmed.
        assert on_a.permit(l_new, ALICE, ordered=True).decision is PermitDecision.RECHECK
        assert on_b.permit(l_old, ALICE, ordered=True).decision is PermitDecision.SUPERSEDED
        assert on_a.permit(l_new, ALICE, ordered=True).decision is PermitDecision.GRANTED
        on_a.complete(l_new, b'{"status":"succeeded"}')
        on_b.complete(l_old, b'{"status":"superseded"}')
    on_a.close()
    on_b.close()
