"""Batch leasing and batch results over real HTTP (issue 11): fewer calls per request."""

from __future__ import annotations

from collections.abc import Callable

from tests.servers.relay import RelayProcess, fake_envelope


def test_lease_many_and_post_many(relay: RelayProcess) -> None:
    tenant, token = relay.create_tenant()
    one, two = relay.enroll_agent(tenant), relay.enroll_agent(tenant)
    with one.transport() as a, two.transport() as b, relay.portal(token) as portal:
        ids = [portal.submit(fake_envelope(tenant)) for _ in range(5)]
        first = a.lease_many(wait=5, most=3)
        assert [lease.request_id for lease in first] == ids[:3]  # oldest first
        rest = b.lease_many(wait=5, most=16)
        assert [lease.request_id for lease in rest] == ids[3:]
        assert b.lease_many(wait=0, most=16) == []
        outcomes = a.complete_many(
            [(lease, b'{"status":"succeeded"}') for lease in first] + [(rest[0], b'{"x":1}')]
        )
        assert outcomes == {**{i: "stored" for i in ids[:3]}, ids[3]: "lease_lost"}
        assert b.complete_many([(lease, b'{"status":"succeeded"}') for lease in rest]) == {
            i: "stored" for i in ids[3:]
        }
        for request_id in ids:
            assert portal.wait_result(request_id, timeout=5) == b'{"status":"succeeded"}'


def test_lease_many_waits_for_the_first(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory()
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as a, relay.portal(token) as portal:
        import threading

        threading.Timer(0.3, portal.submit, args=(fake_envelope(tenant),)).start()
        leased = a.lease_many(wait=5, most=4)
        assert len(leased) == 1
