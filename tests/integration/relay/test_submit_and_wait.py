"""One call for a submit and its result (POST /v1/requests?wait=, PortalClient.
submit_and_wait) over real HTTP against a real relay process."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from agent.transports.base import Lease
from agent.transports.relay import authorization_header
from cloud.relay.client import (
    DuplicateRequest,
    Forbidden,
    InvalidEnvelope,
    NoAgentOnline,
    PortalClient,
    RelayUnavailable,
    RequestExpired,
    RequestMaybeQueued,
    ResultTimeout,
    UnknownRequest,
)
from cloud.relay.portal_calls import PortalCalls
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope, start_relay

RESULT = b'{"request_id":"x","status":"succeeded","sig":{"kid":"agent","value":"AAAA"}}'


def _id(envelope: bytes) -> str:
    return str(json.loads(envelope)["header"]["id"])


def test_one_call_submits_and_brings_the_result(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    # poll_interval 5: only the wake-up by the result answers in well under 5 s.
    relay = relay_factory(poll_interval=5, access_log=True, log_level="info")
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    envelope = fake_envelope(tenant)
    got: list[bytes] = []
    with agent.transport() as transport, relay.portal(token) as portal:
        waiting = threading.Thread(target=lambda: got.append(portal.submit_and_wait(envelope)))
        waiting.start()
        lease = transport.lease(wait=5)
        assert lease is not None and lease.envelope == envelope
        time.sleep(0.3)  # the portal's call is parked in its wait
        posted = time.monotonic()
        transport.complete(lease, RESULT)
        waiting.join(10)
        answered = time.monotonic()
    assert got == [RESULT]
    assert answered - posted < 2.5
    relay.stop()
    portal_calls = [c for c in relay.calls() if c.startswith("/v1/requests")]
    assert portal_calls == ["/v1/requests"]  # no second call to fetch the result


def test_refused_as_a_submit_is_and_nothing_queued(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    lonely = fake_envelope(tenant[0], "nobody-here")
    started = time.monotonic()
    with pytest.raises(NoAgentOnline):
        portal.submit_and_wait(lonely, timeout=30)
    assert time.monotonic() - started < 2  # at once, not after the wait
    with pytest.raises(UnknownRequest):
        portal.poll_result(_id(lonely))
    enroll_agent()
    envelope = fake_envelope(tenant[0])
    portal.submit(envelope)
    with pytest.raises(DuplicateRequest):
        portal.submit_and_wait(envelope, timeout=30)
    with pytest.raises(InvalidEnvelope) as info:
        portal.submit_and_wait(fake_envelope(tenant[0], exp_in=-1), timeout=30)
    assert info.value.code == "expired"
    with pytest.raises(InvalidEnvelope):
        portal.submit_and_wait(b"not json", timeout=30)
    with pytest.raises(Forbidden):
        portal.submit_and_wait(fake_envelope("some-other-tenant"), timeout=30)


def test_still_pending_when_the_time_is_up(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    enroll_agent()  # online, but nobody leases
    envelope = fake_envelope(tenant[0])
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as info:
        portal.submit_and_wait(envelope, timeout=1.5)
    assert 1.4 < time.monotonic() - started < 4
    assert info.value.state == "queued"
    assert portal.poll_result(_id(envelope)) == ("queued", None)  # it was queued


def test_expired_while_waiting_is_never_written(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    enroll_agent()
    with pytest.raises(RequestExpired):
        portal.submit_and_wait(fake_envelope(tenant[0], exp_in=1.5), timeout=30)


def test_relay_lost_after_the_submit_may_have_queued_it(tmp_path: Path) -> None:
    relay = start_relay(tmp_path / "relay")
    try:
        tenant, token = relay.create_tenant()
        relay.enroll_agent(tenant)
        envelope = fake_envelope(tenant)
        caught: list[BaseException] = []

        def wait() -> None:
            try:
                portal.submit_and_wait(envelope, timeout=30)
            except BaseException as exc:  # noqa: BLE001  # what the test looks at
                caught.append(exc)

        with relay.portal(token) as portal:
            waiting = threading.Thread(target=wait)
            waiting.start()
            time.sleep(0.5)  # queued, and waiting for its result
            relay.stop()
            waiting.join(30)
    finally:
        relay.stop()
    assert len(caught) == 1 and isinstance(caught[0], RequestMaybeQueued), caught
    assert _id(envelope) in str(caught[0])


def test_relay_down_before_the_call_queued_nothing(tmp_path: Path) -> None:
    relay = start_relay(tmp_path / "relay")
    tenant, token = relay.create_tenant()
    relay.enroll_agent(tenant)
    relay.stop()
    with relay.portal(token) as portal, pytest.raises(RelayUnavailable) as info:
        portal.submit_and_wait(fake_envelope(tenant), timeout=5)
    assert not isinstance(info.value, RequestMaybeQueued)


def test_portal_calls_alone_in_one_call_together_over_shared_calls(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(access_log=True, log_level="info")
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    envelopes = [fake_envelope(tenant) for _ in range(9)]
    got: dict[str, bytes] = {}

    def answer(lease_count: int) -> None:
        leases: list[Lease] = []
        while len(leases) < lease_count:
            leases += transport.lease_many(wait=5, most=16)
        for lease in leases:  # each its own result: nobody may get another's
            transport.complete(lease, b'{"request_id":"%s"}' % lease.request_id.encode())

    def send(envelope: bytes) -> None:
        got[_id(envelope)] = calls.send(envelope, _id(envelope), timeout=30)

    with agent.transport() as transport, relay.portal(token) as portal, \
            PortalCalls(portal) as calls:
        alone = threading.Thread(target=send, args=(envelopes[0],))
        alone.start()
        answer(1)
        alone.join(10)
        assert got == {_id(envelopes[0]): b'{"request_id":"%s"}' % _id(envelopes[0]).encode()}
        # Eight at once: none is answered before all are queued, so all but the first
        # are sent while another is on its way.
        together = [threading.Thread(target=send, args=(e,)) for e in envelopes[1:]]
        for thread in together:
            thread.start()
        answer(8)
        for thread in together:
            thread.join(10)
    assert got == {_id(e): b'{"request_id":"%s"}' % _id(e).encode() for e in envelopes}
    relay.stop()
    portal_calls = [c for c in relay.calls() if c.startswith("/v1/requests")]
    assert portal_calls[0] == "/v1/requests"  # the lone one: one call, nothing else
    assert "/v1/requests/results:wait" in portal_calls  # shared waits for the others


def _parked_wait(relay: RelayProcess, token: str, request_id: str) -> socket.socket:
    """A portal's result long-poll on a socket of its own, parked in the relay."""
    host, port = relay.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"GET /v1/requests/{request_id}/result?wait=20 HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def test_the_portal_hears_a_result_before_the_agent_hears_stored(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    """The answer goes to the waiting portal first: the relay answers the long-poll it
    woke before it answers the agent's post, so the portal's answer is already on its
    socket when the agent's post returns (one call and a batch of one, five times each)."""
    agent = enroll_agent()
    with agent.transport() as transport, relay.portal(tenant[1]) as portal:
        for batch in (False, True) * 5:
            envelope = fake_envelope(tenant[0])
            portal.submit(envelope)
            lease = transport.lease(wait=5)
            assert lease is not None
            with closing(_parked_wait(relay, tenant[1], _id(envelope))) as waiting:
                time.sleep(0.2)  # parked
                if batch:
                    assert transport.complete_many([(lease, RESULT)]) == ["stored"]
                else:
                    transport.complete(lease, RESULT)
                readable, _, _ = select.select([waiting], [], [], 0)
                assert readable, f"the agent's post (batch={batch}) was answered first"
                assert waiting.recv(65536).startswith(b"HTTP/1.1 200")


def _parked_lease(relay: RelayProcess, agent: EnrolledAgent) -> socket.socket:
    """An agent's lease long-poll on a socket of its own, signed as the agent signs it,
    parked in the relay."""
    host, port = relay.base_url.removeprefix("http://").split(":")
    target = b"/v1/agent/leases?wait=20&max=1"
    auth = authorization_header(agent.signing_key, agent.agent_id, "POST", target, b"")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"POST " + target + f" HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    return sock


def test_the_agent_hears_of_a_request_before_the_portal_hears_queued(
    relay: RelayProcess, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    """A submit wakes the agent's lease long-poll, and the relay answers that poll
    before it answers the submit: the agent starts on the request first (its work is
    what the portal then waits for). A single submit and a batch of one, five times
    each; the batch wakes the poll once, after all of it is queued."""
    agent = enroll_agent()
    with relay.portal(tenant[1]) as portal:
        for batch in (False, True) * 5:
            envelope = fake_envelope(tenant[0])
            with closing(_parked_lease(relay, agent)) as polling:
                time.sleep(0.2)  # parked
                if batch:
                    assert [o.id for o in portal.submit_many([envelope])] == [_id(envelope)]
                else:
                    portal.submit(envelope)
                readable, _, _ = select.select([polling], [], [], 0)
                assert readable, f"the submit (batch={batch}) was answered first"
                answer = polling.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
                assert _id(envelope).encode() in answer
