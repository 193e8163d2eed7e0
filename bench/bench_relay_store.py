"""Lease+complete throughput of the relay stores, SQLite against PostgreSQL, same script.

    .venv/bin/python bench/bench_relay_store.py [--requests 2000] [--handles 2] [--threads 4]
                                                [--store sqlite|postgres|both] [--dsn URL]
                                                [--permit] [--answered N]

Queues `--requests` requests, then `--handles` store handles (as that many relay
replicas on one database) with `--threads` threads each lease and complete them until
the queue is empty, exactly as the relay's routes call the store (with --permit, each
also asks for a write permit, for a user of its own, as an agent does before it
writes: lease+permit+complete, today's hot path). Prints requests per
second, lease+complete latency percentiles, and checks that no request was leased
twice. `--answered N` stores N answered requests first, as a relay holds them for its
retention hour (an hour at 100 resets/s is 360,000): the hot path must not slow down
with them. Without --dsn, PostgreSQL is a throwaway cluster (tests/servers/postgres.py:
fsync and synchronous_commit off; SQLite runs WAL with synchronous=NORMAL, which does
not fsync each commit either).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from cloud.relay.store import RelayStore

ENVELOPE = b'{"header":{},"sealed":{"k":"' + b"A" * 600 + b'"}}'  # about a real envelope
RESULT = b'{"status":"succeeded","sig":"' + b"B" * 120 + b'"}'


@contextlib.contextmanager
def _sqlite() -> Iterator[Callable[[], RelayStore]]:
    from cloud.relay.store_sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        yield lambda: SQLiteStore(Path(tmp) / "relay.sqlite3")


@contextlib.contextmanager
def _postgres(dsn: str | None, pool: int) -> Iterator[Callable[[], RelayStore]]:
    from cloud.relay.store_postgres import PostgresStore

    if dsn is not None:
        yield lambda: PostgresStore(dsn, max_connections=pool)
        return
    from tests.servers.postgres import start_postgres

    server = start_postgres()
    try:
        url = server.create_database()
        yield lambda: PostgresStore(url, max_connections=pool)
    finally:
        server.stop()


def _answer_beforehand(store: RelayStore, tenant: str, answered: int, exp: float) -> None:
    """`answered` requests leased, permitted and answered, as yesterday's traffic left
    them (the same calls as the run, so both stores hold the same rows)."""
    agent = f"{tenant}-a0"
    for n in range(answered):
        request_id = f"old{n:07d}"
        store.add_request(tenant, request_id, "g", exp, ENVELOPE, now=time.time())
        grant = store.lease(tenant, "g", agent, f"L-old-{n}", now=time.time(), lease_timeout=30)
        if grant is None or grant.request_id != request_id:
            raise SystemExit(f"FAILED: could not lease {request_id} while filling the store")
        store.permit(grant.lease_id, agent, f"user-old-{n}", ordered=True, now=time.time(),
                     lease_timeout=30)
        store.complete(grant.lease_id, request_id, agent, RESULT, time.time())


def run(
    open_store: Callable[[], RelayStore], requests: int, handles: int, threads: int,
    *, permit: bool = False, answered: int = 0,
) -> str:
    stores = [open_store() for _ in range(handles)]
    first = stores[0]
    tenant = f"bench{time.time_ns()}"
    first.add_tenant(tenant, f"h-{tenant}", time.time())
    for n in range(handles * threads):
        code = f"c-{tenant}-{n}"
        first.add_enrollment_code(code, tenant, "g", time.time() + 600, time.time())
        first.enroll(code, f"{tenant}-a{n}", f"a{n}", {"sign_key": "k"}, "k", now=time.time())
    exp = time.time() + 3600
    _answer_beforehand(first, tenant, answered, exp)
    for n in range(requests):
        first.add_request(tenant, f"r{n:06d}", "g", exp, ENVELOPE, now=time.time())
    leased: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(handles * threads + 1)

    def work(store: RelayStore, agent: str) -> None:
        mine: list[str] = []
        took: list[float] = []
        barrier.wait()
        n = 0
        while True:
            started = time.perf_counter()
            grant = store.lease(tenant, "g", agent, f"L-{agent}-{n}", now=time.time(),
                                lease_timeout=30)
            if grant is None:
                break
            if permit:
                store.permit(grant.lease_id, agent, f"user-{grant.request_id}", ordered=True,
                             now=time.time(), lease_timeout=30)
            store.complete(grant.lease_id, grant.request_id, agent, RESULT, time.time())
            took.append(time.perf_counter() - started)
            mine.append(grant.request_id)
            n += 1
        with lock:
            leased.extend(mine)
            latencies.extend(took)

    workers = [
        threading.Thread(target=work, args=(store, f"{tenant}-a{h * threads + t}"))
        for h, store in enumerate(stores) for t in range(threads)
    ]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    for store in stores:
        store.close()
    counts = Counter(leased)
    if len(counts) != requests or max(counts.values()) != 1:
        raise SystemExit(f"FAILED: {requests} queued, {len(counts)} leased, some twice or never")
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(len(ms) * 0.95) - 1]
    what = "lease+permit+complete/s" if permit else "lease+complete/s"
    return (f"{requests / elapsed:7.0f} {what}   median {statistics.median(ms):5.2f} ms"
            f"   p95 {p95:5.2f} ms   ({requests} requests, {handles} handles x {threads} threads,"
            f" {elapsed:.2f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--handles", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--dsn", help="an existing PostgreSQL database (default: throwaway)")
    parser.add_argument("--permit", action="store_true", help="ask for a write permit too")
    parser.add_argument("--answered", type=int, default=0,
                        help="answered requests stored before the run (default 0)")
    args = parser.parse_args()
    if args.store in ("sqlite", "both"):
        with _sqlite() as open_store:
            print("sqlite  ", run(open_store, args.requests, args.handles, args.threads,
                                     permit=args.permit, answered=args.answered))
    if args.store in ("postgres", "both"):
        with _postgres(args.dsn, args.threads) as open_store:
            print("postgres", run(open_store, args.requests, args.handles, args.threads,
                                     permit=args.permit, answered=args.answered))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
