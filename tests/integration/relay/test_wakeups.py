"""Lease long-polls over a real relay: a submit answers one waiting poll promptly and
leaves the others waiting; a poll whose client went away does not keep a request
from the next poll until the re-check interval.

The relay re-checks every 10 s here (--poll-interval), longer than any wait below,
so what answers a poll in these tests is the submit's wake-up and nothing else."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agent.transports.base import Lease, TransportUnavailable
from agent.transports.relay import RelayTransport
from tests.servers.relay import RelayProcess, fake_envelope

WAIT = 8.0


class Poll:
    """One lease long-poll in a thread."""

    def __init__(self, transport: RelayTransport) -> None:
        self.lease: Lease | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(transport,), daemon=True)
        self.thread.start()

    def _run(self, transport: RelayTransport) -> None:
        try:
            self.lease = transport.lease(wait=WAIT)
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            self.error = exc

    @property
    def answered(self) -> bool:
        return not self.thread.is_alive()


def _answered_within(polls: list[Poll], count: int, seconds: float) -> list[Poll]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and sum(p.answered for p in polls) < count:
        time.sleep(0.02)
    return [p for p in polls if p.answered]


@pytest.fixture
def quiet_relay(relay_factory: Callable[..., RelayProcess]) -> RelayProcess:
    return relay_factory(poll_interval=10)


def test_each_submit_answers_one_of_four_waiting_polls_and_the_others_keep_waiting(
    quiet_relay: RelayProcess,
) -> None:
    tenant, token = quiet_relay.create_tenant()
    transports = [quiet_relay.enroll_agent(tenant).transport() for _ in range(4)]
    with quiet_relay.portal(token) as portal:
        polls = [Poll(t) for t in transports]
        time.sleep(0.5)  # all four are waiting in the relay
        first = portal.submit(fake_envelope(tenant))
        answered = _answered_within(polls, 1, 2.0)
        time.sleep(0.5)
        answered = [p for p in polls if p.answered]
        assert len(answered) == 1, "one submit answers exactly one poll"
        assert answered[0].lease is not None and answered[0].lease.request_id == first

        second = {portal.submit(fake_envelope(tenant)) for _ in range(2)}
        answered = _answered_within(polls, 3, 2.0)
        time.sleep(0.3)
        answered = [p for p in polls if p.answered]
        assert len(answered) == 3, "two submits answer two more polls"
        assert {p.lease.request_id for p in answered if p.lease} == {first, *second}
        assert all(p.error is None for p in polls)
        assert len([p for p in polls if not p.answered]) == 1
        last = portal.submit(fake_envelope(tenant))
        for p in polls:
            p.thread.join(WAIT + 5)
    assert {p.lease.request_id for p in polls if p.lease} == {first, *second, last}
    for t in transports:
        t.close()


def test_a_poll_whose_client_went_away_passes_the_submit_on_to_the_next_poll(
    quiet_relay: RelayProcess,
) -> None:
    tenant, token = quiet_relay.create_tenant()
    gone, waiting = (quiet_relay.enroll_agent(tenant).transport() for _ in range(2))
    # The first poll's client gives up after 0.3 s; its poll stays in the relay, the
    # oldest waiter, until a wake-up or the re-check (10 s) finds the client gone.
    with pytest.raises(TransportUnavailable):
        gone._call("POST", "/v1/agent/lease", params={"wait": "20"}, timeout=0.3)
    gone.close()  # the agent stopped: its connection is closed
    poll = Poll(waiting)
    time.sleep(0.5)
    with quiet_relay.portal(token) as portal:
        submitted = time.monotonic()
        request_id = portal.submit(fake_envelope(tenant))
        poll.thread.join(WAIT + 5)
    took = time.monotonic() - submitted
    assert poll.error is None
    assert poll.lease is not None and poll.lease.request_id == request_id
    assert took < 2.0, f"the request waited {took:.1f} s for the re-check"
    waiting.close()
