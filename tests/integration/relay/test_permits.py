"""Write permits over real HTTP: the fence, redelivery after a permit, per-user
ordering and exclusion, and the portal's view of a permitted request nobody answered."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest

from agent.transports.base import LeaseLost
from cloud.relay.client import RequestExpired, RequestInDoubt
from tests.servers.relay import RelayProcess, fake_envelope
from wire.permits import PermitDecision

ALICE = hashlib.sha256(b"alice").hexdigest()
BOB = hashlib.sha256(b"bob").hexdigest()


def test_redelivery_after_a_permit_is_in_doubt_and_the_first_answer_wins(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(lease_timeout=1, late_answer_grace=2)
    tenant, token = relay.create_tenant()
    first, second = relay.enroll_agent(tenant), relay.enroll_agent(tenant)
    with first.transport() as a, second.transport() as b, relay.portal(token) as portal:
        request_id = portal.submit(fake_envelope(tenant))
        lease = a.lease(wait=5)
        assert lease is not None
        with pytest.raises(LeaseLost):
            b.permit(lease, ALICE, ordered=True)  # only the holder
        permit = a.permit(lease, ALICE, ordered=True)
        assert permit.decision is PermitDecision.GRANTED
        assert permit.lease.expires_at >= lease.expires_at and 0 < permit.valid_for <= 1
        # a's answer is lost; the lease runs out and b gets the request. Within the
        # late-answer grace b is told to wait: a may still post its answer.
        taken = b.lease(wait=5)
        assert taken is not None and taken.request_id == request_id
        assert b.permit(taken, ALICE, ordered=True).decision is PermitDecision.BUSY
        # a's result arrives late: it is the truth, and b has nothing left to post.
        a.complete(permit.lease, b'{"status":"succeeded","by":"a"}')
        with pytest.raises(LeaseLost):
            b.complete(taken, b'{"status":"in_doubt","by":"b"}')
        assert portal.wait_result(request_id, timeout=5) == b'{"status":"succeeded","by":"a"}'

        # Another request whose holder never answers: in doubt once the grace is over.
        second_id = portal.submit(fake_envelope(tenant))
        lease = a.lease(wait=5)
        assert lease is not None and lease.request_id == second_id
        assert a.permit(lease, BOB, ordered=True).decision is PermitDecision.GRANTED
        taken = b.lease(wait=5)
        assert taken is not None and taken.request_id == second_id
        assert b.permit(taken, BOB, ordered=True).decision is PermitDecision.BUSY
        time.sleep(2.2)
        assert b.permit(taken, BOB, ordered=True).decision is PermitDecision.IN_DOUBT


def test_newer_request_supersedes_and_one_permit_per_user(relay: RelayProcess) -> None:
    tenant, token = relay.create_tenant()
    one, two = relay.enroll_agent(tenant), relay.enroll_agent(tenant)
    with one.transport() as a, two.transport() as b, relay.portal(token) as portal:
        older = portal.submit(fake_envelope(tenant))
        newer = portal.submit(fake_envelope(tenant))
        other = portal.submit(fake_envelope(tenant))
        held = {}
        for transport in (a, b, a):
            lease = transport.lease(wait=5)
            assert lease is not None
            held[lease.request_id] = (transport, lease)
        t_new, l_new = held[newer]
        t_old, l_old = held[older]
        t_oth, l_oth = held[other]
        assert t_new.permit(l_new, ALICE, ordered=True).decision is PermitDecision.GRANTED
        assert t_old.permit(l_old, ALICE, ordered=True).decision is PermitDecision.SUPERSEDED
        # An unlock of the same user waits while the reset's permit is open.
        assert t_oth.permit(l_oth, ALICE, ordered=False).decision is PermitDecision.BUSY
        assert t_oth.permit(l_oth, BOB, ordered=True).decision is PermitDecision.GRANTED
        t_new.complete(l_new, b'{"status":"succeeded"}')
        t_old.complete(l_old, b'{"status":"superseded"}')
        t_oth.complete(l_oth, b'{"status":"succeeded"}')


def test_a_permitted_request_nobody_answered_is_in_doubt_not_expired(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(lease_timeout=1)
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as a, relay.portal(token) as portal:
        written = portal.submit(fake_envelope(tenant, exp_in=2))
        untouched = portal.submit(fake_envelope(tenant, exp_in=2))
        lease = a.lease(wait=5)
        assert lease is not None and lease.request_id == written
        assert a.permit(lease, ALICE, ordered=True).decision is PermitDecision.GRANTED
        time.sleep(3.2)  # the agent "dies": exp and the lease pass
        with pytest.raises(RequestInDoubt):
            portal.wait_result(written, timeout=5)
        with pytest.raises(RequestExpired):
            portal.wait_result(untouched, timeout=5)
