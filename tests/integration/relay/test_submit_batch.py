"""Several submits in one call (POST /v1/requests:batch) over real HTTP: each envelope
gets exactly what the single submit gives it, and Submitter shares the calls between
a portal's threads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from cloud.relay.client import (
    DuplicateRequest,
    Forbidden,
    InvalidEnvelope,
    NoAgentOnline,
    PortalClient,
)
from cloud.relay.submitter import Submitter
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope


def test_each_envelope_is_answered_as_the_single_submit_answers_it(
    portal: PortalClient, tenant: tuple[str, str], enroll_agent: Callable[..., EnrolledAgent]
) -> None:
    enroll_agent()
    seen = portal.submit(fake_envelope(tenant[0]))
    first, second = fake_envelope(tenant[0]), fake_envelope(tenant[0])
    answers = portal.submit_many(
        [
            first,
            fake_envelope(tenant[0], request_id=seen),  # submitted before
            fake_envelope(tenant[0], exp_in=-5),  # expired
            fake_envelope("another-tenant"),
            fake_envelope(tenant[0], group="nobody-online"),
            b'{"header": {"id": "x"}}',  # malformed
            second,
        ]
    )
    assert answers[0].value() == json.loads(first)["header"]["id"]
    for answer, refused, code in [
        (answers[1], DuplicateRequest, "duplicate_id"),
        (answers[2], InvalidEnvelope, "expired"),
        (answers[3], Forbidden, "wrong_tenant"),
        (answers[4], NoAgentOnline, "no_agent_online"),
        (answers[5], InvalidEnvelope, "malformed_envelope"),
    ]:
        with pytest.raises(refused) as info:
            answer.value()
        assert info.value.code == code
    queued = [answers[0].value(), answers[6].value(), seen]
    assert [s.state for s in portal.poll_results(queued)] == ["queued"] * 3



def test_submitter_shares_calls_between_threads(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(log_level="info", access_log=True)  # counts the calls
    tenant, token = relay.create_tenant()
    relay.enroll_agent(tenant)
    with relay.portal(token) as portal:
        submitter = Submitter(portal)
        start = threading.Barrier(12)
        ids: list[str] = []
        refused: list[Exception] = []

        def submit(envelope: bytes) -> None:
            start.wait()
            try:
                ids.append(submitter.submit(envelope))
            except Exception as exc:  # noqa: BLE001  # the test collects what each got
                refused.append(exc)

        envelopes = [fake_envelope(tenant) for _ in range(11)]
        envelopes.append(fake_envelope(tenant, exp_in=-5))
        threads = [threading.Thread(target=submit, args=(e,)) for e in envelopes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert len(ids) == 11 and len(refused) == 1
        assert isinstance(refused[0], InvalidEnvelope) and refused[0].code == "expired"
        assert [s.state for s in portal.poll_results(ids)] == ["queued"] * 11
    relay.stop()
    submits = [c for c in relay.calls() if c.startswith("/v1/requests") and "results" not in c]
    assert 1 <= len(submits) < 12, submits  # shared, not one per envelope


def test_a_sender_lingering_for_company_shares_its_call_with_threads_just_behind(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    """With `linger` (the portal's calls use a few ms), threads that submit a moment
    apart, none finding a call in flight, still share one call."""
    relay = relay_factory(log_level="info", access_log=True)  # counts the calls
    tenant, token = relay.create_tenant()
    relay.enroll_agent(tenant)
    with relay.portal(token) as portal:
        submitter = Submitter(portal, linger=1.0)
        ids: list[str] = []

        def submit() -> None:
            ids.append(submitter.submit(fake_envelope(tenant)))

        threads = [threading.Thread(target=submit) for _ in range(4)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)  # each a little after the one before
        for thread in threads:
            thread.join(20)
        assert len(set(ids)) == 4
        assert [s.state for s in portal.poll_results(ids)] == ["queued"] * 4
    relay.stop()
    submits = [c for c in relay.calls() if c.startswith("/v1/requests") and "results" not in c]
    assert submits == ["/v1/requests:batch"], submits
