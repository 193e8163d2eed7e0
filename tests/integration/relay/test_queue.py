"""Submit -> lease -> result over real HTTP, through RelayTransport and PortalClient."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.transports.base import LeaseLost
from cloud.relay.client import (
    DuplicateRequest,
    EnvelopeTooLarge,
    Forbidden,
    InvalidEnvelope,
    NoAgentOnline,
    PortalClient,
    RequestExpired,
    ResultTimeout,
    UnknownRequest,
)
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope, public_key_b64

RESULT = b'{"request_id":"x","status":"succeeded","sig":{"kid":"agent","value":"AAAA"}}'


def test_round_trip_keeps_bytes_exact(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    transport = enroll_agent().transport()
    envelope = fake_envelope(tenant[0])
    request_id = portal.submit(envelope)
    assert portal.poll_result(request_id) == ("queued", None)

    lease = transport.lease(wait=5)
    assert lease is not None
    assert lease.request_id == request_id
    assert lease.envelope == envelope
    assert lease.expires_at > time.time()
    assert portal.poll_result(request_id) == ("leased", None)

    renewed = transport.renew(lease)
    assert renewed.expires_at >= lease.expires_at
    transport.complete(renewed, RESULT)
    transport.complete(renewed, RESULT)  # the same agent re-posting is idempotent
    assert portal.wait_result(request_id, timeout=5) == RESULT
    assert transport.lease(wait=0) is None


def test_no_agent_online_is_refused_at_once(portal: PortalClient, tenant: tuple[str, str]) -> None:
    envelope = fake_envelope(tenant[0], "nobody-here")
    started = time.monotonic()
    with pytest.raises(NoAgentOnline) as info:
        portal.submit(envelope)
    assert time.monotonic() - started < 1.0
    assert info.value.status == 503
    request_id = json.loads(envelope)["header"]["id"]
    with pytest.raises(UnknownRequest):  # nothing was queued
        portal.poll_result(request_id)


def test_agent_goes_offline_after_presence_timeout(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(presence_timeout=1)
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as transport, relay.portal(token) as portal:
        time.sleep(1.3)
        assert portal.agents("default")[0]["online"] is False
        with pytest.raises(NoAgentOnline):
            portal.submit(fake_envelope(tenant))
        transport.heartbeat(agent.heartbeat_body())
        assert portal.agents("default")[0]["online"] is True
        portal.submit(fake_envelope(tenant))


def test_submit_refusals(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    enroll_agent()
    envelope = fake_envelope(tenant[0])
    portal.submit(envelope)
    with pytest.raises(DuplicateRequest):
        portal.submit(envelope)
    with pytest.raises(EnvelopeTooLarge):
        portal.submit(fake_envelope(tenant[0], padding=70 * 1024))
    with pytest.raises(InvalidEnvelope) as info:
        portal.submit(fake_envelope(tenant[0], exp_in=-1))
    assert info.value.code == "expired"
    with pytest.raises(InvalidEnvelope) as info:
        portal.submit(b'{"header": {"id": "x"}}')
    assert info.value.code == "malformed_envelope"
    with pytest.raises(InvalidEnvelope):
        portal.submit(b"not json")
    with pytest.raises(Forbidden) as denied:
        portal.submit(fake_envelope("some-other-tenant"))
    assert denied.value.code == "wrong_tenant"


def test_expired_request_is_never_leased(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    transport = enroll_agent().transport()
    request_id = portal.submit(fake_envelope(tenant[0], exp_in=1.0))
    time.sleep(1.2)
    assert transport.lease(wait=0) is None
    with pytest.raises(RequestExpired):
        portal.wait_result(request_id, timeout=1)


def test_release_makes_it_leasable_at_once(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    first, second = enroll_agent().transport(), enroll_agent().transport()
    request_id = portal.submit(fake_envelope(tenant[0]))
    lease = first.lease(wait=5)
    assert lease is not None
    assert second.lease(wait=0) is None  # held by the first agent

    got: list[float] = []

    def wait_for_it() -> None:
        other = second.lease(wait=10)
        assert other is not None and other.request_id == request_id
        got.append(time.monotonic())

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.3)  # the second agent is now in its long-poll
    released = time.monotonic()
    first.release(lease)
    waiter.join(timeout=10)
    assert got, "the second agent did not get the released request"
    print(f"\nrelease -> re-lease by a waiting agent: {(got[0] - released) * 1000:.1f} ms")
    assert got[0] - released < 1.0
    with pytest.raises(LeaseLost):
        first.complete(lease, RESULT)
    with pytest.raises(LeaseLost):
        first.renew(lease)


def test_tenant_isolation(
    relay: RelayProcess, portal: PortalClient, tenant: tuple[str, str],
    enroll_agent: Callable[..., EnrolledAgent],
) -> None:
    agent = enroll_agent()
    transport = agent.transport()
    request_id = portal.submit(fake_envelope(tenant[0]))
    lease = transport.lease(wait=5)
    assert lease is not None
    transport.complete(lease, RESULT)

    _, other_token = relay.create_tenant()
    with relay.portal(other_token) as intruder:
        with pytest.raises(UnknownRequest):
            intruder.poll_result(request_id)
        assert intruder.agents("default") == []
        with pytest.raises(Forbidden):
            intruder.submit(fake_envelope(tenant[0]))
    with relay.portal("wbr_not-a-token") as anonymous, pytest.raises(Forbidden):
        anonymous.agents("default")
    assert portal.wait_result(request_id, timeout=1) == RESULT


def test_agents_listing_has_keys_and_presence(
    portal: PortalClient, enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agent = enroll_agent(extra_keys={"hpke_key": {"kem": "X25519", "key": "AAAA"}})
    enroll_agent("other-group")
    (listed,) = portal.agents("default")
    assert listed["agent_id"] == agent.agent_id
    assert listed["public_keys"]["hpke_key"] == {"kem": "X25519", "key": "AAAA"}
    assert listed["online"] is True


def test_heartbeat_and_portal_keys(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    agent = enroll_agent()
    transport = agent.transport()
    assert transport.portal_keys() == []
    key = public_key_b64(Ed25519PrivateKey.generate())
    relay.add_portal_key(tenant[0], "portal-2026", key, not_after=time.time() + 3600)
    relay.add_portal_key(tenant[0], "portal-old", key, not_after=time.time() - 1)  # expired
    (listed,) = transport.portal_keys()
    assert listed["kid"] == "portal-2026" and listed["public_key"] == key
    transport.heartbeat(agent.heartbeat_body(directories={"corp": True}))


def test_result_long_poll_wakes_promptly(relay_factory: Callable[..., RelayProcess]) -> None:
    # A 5 s store re-check makes the two mechanisms distinguishable on a loaded CI
    # machine: only the in-process wake-up answers in well under 5 s.
    relay = relay_factory(poll_interval=5)
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as transport, relay.portal(token) as portal:
        request_id = portal.submit(fake_envelope(tenant))
        lease = transport.lease(wait=5)
        assert lease is not None
        done: list[tuple[float, bytes]] = []

        def wait() -> None:
            result = portal.wait_result(request_id, timeout=20)
            done.append((time.monotonic(), result))

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)  # the portal is parked in its long-poll
        posted = time.monotonic()
        transport.complete(lease, RESULT)
        waiter.join(timeout=20)
    assert done and done[0][1] == RESULT
    latency = done[0][0] - posted
    print(f"\nresult long-poll latency (agent posts result -> portal has it): "
          f"{latency * 1000:.1f} ms")
    assert latency < 2.5  # not the 5 s re-check: the wake-up did it


def test_lease_long_poll_wakes_promptly(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(poll_interval=5)  # see test_result_long_poll_wakes_promptly
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    got: list[float] = []
    with agent.transport() as transport, relay.portal(token) as portal:

        def wait() -> None:
            lease = transport.lease(wait=20)
            assert lease is not None
            got.append(time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        submitted = time.monotonic()
        portal.submit(fake_envelope(tenant))
        waiter.join(timeout=20)
    assert got
    print(f"\nlease long-poll latency (submit -> agent has lease): "
          f"{(got[0] - submitted) * 1000:.1f} ms")
    assert got[0] - submitted < 2.5  # not the 5 s re-check: the wake-up did it


def test_wait_result_times_out_with_state(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    enroll_agent()
    request_id = portal.submit(fake_envelope(tenant[0]))
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as info:
        portal.wait_result(request_id, timeout=1)
    assert info.value.state == "queued"
    assert 0.9 < time.monotonic() - started < 3


def test_result_for_unknown_lease_is_a_conflict(
    tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent], portal: PortalClient
) -> None:
    first, second = enroll_agent().transport(), enroll_agent().transport()
    portal.submit(fake_envelope(tenant[0]))
    lease = first.lease(wait=5)
    assert lease is not None
    with pytest.raises(LeaseLost):
        second.complete(lease, RESULT)  # not second's lease
    with pytest.raises(LeaseLost):
        second.release(lease)
    first.complete(lease, RESULT)


def test_openapi_and_health(relay: RelayProcess) -> None:
    spec = httpx.get(relay.base_url + "/openapi.json").json()
    for path in ("/v1/requests", "/v1/requests/{request_id}/result", "/v1/agent/lease",
                 "/v1/agents/enroll", "/v1/agent/results", "/v1/groups/{agent_group}/agents"):
        assert path in spec["paths"]
    assert httpx.get(relay.base_url + "/healthz").json() == {"status": "ok"}


def test_unknown_request_id(portal: PortalClient) -> None:
    with pytest.raises(UnknownRequest):
        portal.poll_result(uuid.uuid4().hex)
