"""The SQLite store's hot path costs the same however many answered requests it keeps.

A relay keeps answered requests for its retention hour (360,000 at 100 resets/s).
When the lease and the result looked their request up with a scan, every call got
slower with each one kept (bench/bench_relay_store.py --answered 20000: 1,071 ->
64 lease+permit+complete per second). The work is counted here in SQLite virtual
machine steps, which do not depend on how busy the machine is, so the test cannot
pass or fail by timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.relay.store_sqlite import SQLiteStore

T0 = 1_700_000_000.0
EXP = T0 + 3600
ENVELOPE = b'{"header":{},"sealed":{}}'
RESULT = b'{"status":"succeeded"}'
KEPT = 3000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "relay.sqlite3")
    store.add_tenant("t1", "h1", T0)
    store.add_enrollment_code("c1", "t1", "g", T0 + 600, T0)
    store.enroll("c1", "a1", "agent", {"sign_key": "k"}, "k", now=T0)
    yield store
    store.close()


def _answer(store: SQLiteStore, request_id: str, now: float) -> None:
    store.add_request("t1", request_id, "g", EXP, ENVELOPE, now=now)
    grant = store.lease("t1", "g", "a1", f"L-{request_id}", now=now, lease_timeout=30)
    assert grant is not None and grant.request_id == request_id
    store.permit(grant.lease_id, "a1", f"user-{request_id}", ordered=True, now=now,
                 lease_timeout=30)
    assert store.complete(grant.lease_id, request_id, "a1", RESULT, now)


def _steps(store: SQLiteStore, call: Callable[[], Any]) -> int:
    """SQLite VM steps (in hundreds) that `call` takes on this thread's connection."""
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0

    conn = store._conn()
    conn.set_progress_handler(tick, 100)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 0)
    return counted[0]


def _one_reset(store: SQLiteStore, n: int, now: float) -> dict[str, int]:
    """The store calls of one reset, as the relay's routes make them, each counted."""
    request_id = f"new{n}"
    grants: list[Any] = []
    steps = {
        "submit": _steps(store, lambda: store.add_request("t1", request_id, "g", EXP, ENVELOPE,
                                                          now=now)),
        "lease": _steps(store, lambda: grants.append(
            store.lease("t1", "g", "a1", f"L-{request_id}", now=now, lease_timeout=30))),
    }
    grant = grants[0]
    assert grant is not None and grant.request_id == request_id
    steps["permit"] = _steps(store, lambda: store.permit(
        grant.lease_id, "a1", f"user-{request_id}", ordered=True, now=now, lease_timeout=30))
    steps["result"] = _steps(store, lambda: store.complete(grant.lease_id, request_id, "a1",
                                                           RESULT, now))
    steps["wait"] = _steps(store, lambda: store.request_statuses("t1", [request_id], now))
    steps["prune"] = _steps(store, lambda: store.prune(now, keep_for=3600))
    return steps


def test_a_reset_costs_the_same_with_thousands_of_answered_requests_kept(
    store: SQLiteStore,
) -> None:
    empty = _one_reset(store, 0, T0)
    for n in range(KEPT):
        _answer(store, f"old{n:05d}", T0 + 1 + n / 1000)
    full = _one_reset(store, 1, T0 + 10)
    grown = {call: (empty[call], full[call]) for call in empty
             if full[call] > 2 * empty[call] + 5}
    # A scan of the kept requests costs thousands of steps here (each is about ten).
    assert grown == {}, f"store calls that grow with answered requests (before, after): {grown}"


def test_the_prune_still_deletes_what_the_retention_lets_go(store: SQLiteStore) -> None:
    """Split in two statements, the prune deletes both kinds, and nothing else."""
    _answer(store, "answered-long-ago", T0)
    store.add_request("t1", "expired-long-ago", "g", T0 + 1, ENVELOPE, now=T0)
    _answer(store, "answered-lately", T0 + 3000)
    store.add_request("t1", "queued-lately", "g", T0 + 4000, ENVELOPE, now=T0 + 3000)
    assert store.prune(T0 + 3700, keep_for=3600) == 2
    now = T0 + 3700
    left = store.request_statuses(
        "t1", ["answered-long-ago", "expired-long-ago", "answered-lately", "queued-lately"], now)
    assert [s is not None for s in left] == [False, False, True, True]
