"""Batch leasing and batch results over real HTTP (issue 11): fewer calls per request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.poster import ResultPoster
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
        assert outcomes == ["stored", "stored", "stored", "lease_lost"]
        assert b.complete_many([(lease, b'{"status":"succeeded"}') for lease in rest]) == [
            "stored",
            "stored",
        ]
        for request_id in ids:
            assert portal.wait_result(request_id, timeout=5) == b'{"status":"succeeded"}'


def test_lease_many_waits_for_the_first(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory()
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    with agent.transport() as a, relay.portal(token) as portal:
        submit = threading.Timer(0.3, portal.submit, args=(fake_envelope(tenant),))
        submit.start()
        leased = a.lease_many(wait=5, most=4)
        # The lease can come back before the submit has read its own answer: let it
        # finish before the portal client is closed under it.
        submit.join(timeout=10)
        assert len(leased) == 1


def test_poster_settles_each_result_of_a_refused_batch(relay: RelayProcess, tmp_path: Path) -> None:
    """The agent's result poster over HTTP: a batch the relay refuses for one bad result
    (422) is posted again one by one, so the good result is stored and acknowledged in
    the journal and only the bad one is left unposted."""
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant)
    journal = Journal(tmp_path / "journal.sqlite3")
    with agent.transport() as a, relay.portal(token) as portal:
        good_id, bad_id = (portal.submit(fake_envelope(tenant)) for _ in range(2))
        good, bad = a.lease_many(wait=5, most=2)
        assert (good.request_id, bad.request_id) == (good_id, bad_id)
        for lease in (good, bad):
            journal.claim(lease.request_id, op="reset", user_ref="u")
            journal.mark_writing(lease.request_id, lease_id=lease.lease_id)
            journal.finish(lease.request_id, status="succeeded", result=b"{}")
        events: list[tuple[str, dict[str, Any]]] = []

        class Log:
            def __getattr__(self, level: str) -> Callable[..., None]:
                return lambda event, **kw: events.append((event, kw))

        poster = ResultPoster(
            agent.transport,
            journal,
            Log(),
            stopping=lambda: False,
            working=lambda: 2,
            backoff=lambda: None,
            linger=5,
        )
        poster.start()
        posts = [
            threading.Thread(target=poster.post, args=(good, b'{"status":"succeeded"}')),
            threading.Thread(target=poster.post, args=(bad, b"not json")),
        ]
        for thread in posts:
            thread.start()
        for thread in posts:
            thread.join(20)
        poster.close(5)
        assert portal.wait_result(good_id, timeout=5) == b'{"status":"succeeded"}'
        assert portal.poll_result(bad_id) == ("leased", None)
        assert [row[0] for row in journal.unposted(600)] == [bad_id]
        assert [kw["request_id"] for event, kw in events if event == "result.not_posted"] == [
            bad_id
        ]


def test_permits_in_one_call_follow_the_single_call_rules(relay: RelayProcess) -> None:
    tenant, token = relay.create_tenant()
    one, two = relay.enroll_agent(tenant), relay.enroll_agent(tenant)
    with one.transport() as a, two.transport() as b, relay.portal(token) as portal:
        for _ in range(3):
            portal.submit(fake_envelope(tenant))
        older, newer = a.lease_many(wait=5, most=2)
        (others,) = b.lease_many(wait=5, most=1)
        same_user, someone = "a" * 64, "b" * 64
        answers = a.permit_many(
            [(older, same_user, True, "1" * 64), (newer, same_user, True, None),
             (others, someone, True, None)]
        )
        assert answers[2] is None  # b's lease: lost to a, as the single call's 409
        granted, busy = answers[0], answers[1]
        assert granted is not None and granted.decision.value == "granted"
        assert busy is not None and busy.decision.value == "busy"  # older one holds the permit
        assert granted.lease.expires_at >= older.expires_at  # renewed
        assert a.permit(newer, same_user, ordered=True).decision.value == "busy"  # same answer
        # asked again: the same grant
        (again,) = a.permit_many([(older, same_user, True, "1" * 64)])
        assert again is not None and again.decision.value == "granted"
        a.complete(older, b'{"status":"succeeded"}')
        # That write closed after `newer` was leased: reserved for a fresh read, then granted.
        assert a.permit(newer, same_user, ordered=True).decision.value == "recheck"
        assert a.permit(newer, same_user, ordered=True).decision.value == "granted"
