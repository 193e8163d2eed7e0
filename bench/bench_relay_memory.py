"""Relay RSS over many requests: the real relay process (SQLite), agents and a portal
client over HTTP, each request making the calls a reset makes through the relay
(submit, lease, permit, post result, fetch result), as in bench_relay_cpu.py but
without a directory, so 10,000 requests take a minute rather than half an hour.

    .venv/bin/python bench/bench_relay_memory.py [--requests 10000] [--every 1000]
        [--threads 16] [--env MALLOC_ARENA_MAX=2] [--tracemalloc FRAMES]

Prints the relay's RSS (MiB) after the warm-up and every --every requests. With
--tracemalloc the relay runs with PYTHONTRACEMALLOC and bench/_probe/sitecustomize.py,
which writes a tracemalloc snapshot on SIGUSR1; the bench prints the 25 biggest
growths between the first and the last sample (Python objects only: memory the C
allocator keeps but Python freed does not show there, which tells a leak from
allocator high water).

What it showed (2026-11, SQLite store, 16 threads): the relay's growth is SQLite's
page cache, up to 2 MiB per connection, one connection per thread that ever ran a
store call. With store calls on anyio's thread pool (up to 40 threads) that was
84 -> 124 MiB over 5,000 requests and still rising (SQLite 7 -> 51 MiB); with the
fixed 8 store threads it is 78 -> 89 MiB over 10,000 requests, +0.6 MiB over the
last 5,000 (SQLite peaks at 18 MiB: 9 connections), and Python's own heap
(tracemalloc) does not grow at all. With one store thread (SQLite served by one
connection, plus the event loop's read connection): 72 -> 74 MiB over 10,000
requests, +0.1 MiB over the last 5,000, SQLite at most 2.5 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

# WRITEBACK_TREE=/path/to/old/tree measures that tree's relay (as in bench_relay_cpu.py).
if os.environ.get("WRITEBACK_TREE"):
    sys.path.insert(0, os.environ["WRITEBACK_TREE"])

from bench.procstat import rss_bytes
from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope, start_relay

RESULT = b'{"result":{"status":"succeeded","request_id":"x"},"sig":{"kid":"k","value":"v"}}'
_PROBE = Path(__file__).resolve().with_name("_probe")


PADDING = [2500]  # envelope filler: a sealed ML-KEM-768 + X25519 request is ~3 KB


def _worker(relay: RelayProcess, token: str, agent: EnrolledAgent, *, todo: list[int],
            lock: threading.Lock, done: list[int]) -> None:
    with relay.portal(token) as portal, agent.transport() as transport:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            request_id = uuid.uuid4().hex
            portal.submit(fake_envelope(agent.tenant, request_id=request_id, padding=PADDING[0]))
            lease = transport.lease(wait=5)
            if lease is None:
                raise RuntimeError("no lease within 5 s: is the relay overloaded?")
            transport.permit(lease, uuid.uuid4().hex * 2, ordered=True)
            transport.complete(lease, RESULT)
            portal.wait_result(request_id, timeout=5)
            with lock:
                done[0] += 1


def drive(relay: RelayProcess, token: str, agents: list[EnrolledAgent], count: int) -> None:
    todo, lock, done = list(range(count)), threading.Lock(), [0]
    threads = [threading.Thread(target=_worker, args=(relay, token, a),
                                kwargs={"todo": todo, "lock": lock, "done": done})
               for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if done[0] != count:
        raise RuntimeError(f"only {done[0]} of {count} requests finished")


def _signal_for(relay: RelayProcess, sig: int, path: Path) -> Path:
    relay.proc.send_signal(sig)
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the relay wrote no {path.name}")
        time.sleep(0.05)
    return path


def snapshot(relay: RelayProcess, path: Path) -> tracemalloc.Snapshot:
    return tracemalloc.Snapshot.load(str(_signal_for(relay, signal.SIGUSR1, path)))


def memory(relay: RelayProcess, probe_dir: Path, n: int) -> str:
    """What SQLite and glibc malloc hold in the relay (bench/_probe/sitecustomize.py)."""
    m = json.loads(_signal_for(relay, signal.SIGUSR2, probe_dir / f"mem-{n}.json").read_text())
    mib = 2**20
    return (f"sqlite {m['sqlite_used'] / mib:5.1f} (peak {m['sqlite_highwater'] / mib:5.1f}), "
            f"malloc in use {m['malloc_in_use'] / mib:5.1f} free {m['malloc_free'] / mib:5.1f} "
            f"mmapped {m['malloc_mmapped'] / mib:5.1f} MiB (all arenas)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the relay")
    parser.add_argument("--padding", type=int, default=2500, help="envelope filler bytes")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace the relay's allocations, keeping this many frames")
    args = parser.parse_args()
    PADDING[0] = args.padding
    for pair in args.env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        probe_dir = Path(tmp) / "probe"
        probe_dir.mkdir()
        os.environ["WB_PROBE_DIR"] = str(probe_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PROBE), os.environ.get("PYTHONPATH")]))
        if args.tracemalloc:
            os.environ["PYTHONTRACEMALLOC"] = str(args.tracemalloc)
        relay = start_relay(Path(tmp) / "relay", ready_timeout=120)
        try:
            tenant, token = relay.create_tenant()
            agents = [relay.enroll_agent(tenant) for _ in range(args.threads)]
            drive(relay, token, agents, args.warmup)
            samples = [rss_bytes([relay.proc.pid])]
            print(f"  {0:6d} requests: RSS {samples[-1] / 2**20:6.1f} MiB; "
                  + memory(relay, probe_dir, 0), flush=True)
            snaps = [snapshot(relay, probe_dir / "0.snap")] if args.tracemalloc else []
            done = 0
            started = time.perf_counter()
            while done < args.requests:
                step = min(args.every, args.requests - done)
                drive(relay, token, agents, step)
                done += step
                samples.append(rss_bytes([relay.proc.pid]))
                print(f"  {done:6d} requests: RSS {samples[-1] / 2**20:6.1f} MiB; "
                      + memory(relay, probe_dir, len(samples) - 1), flush=True)
            wall = time.perf_counter() - started
            if args.tracemalloc:
                snaps.append(snapshot(relay, probe_dir / "1.snap"))
        finally:
            relay.stop()
    print(f"relay RSS (MiB) after warm-up and every {args.every} requests "
          f"({args.threads} threads, {done / wall:.0f} requests/s): "
          + " ".join(f"{s / 2**20:.0f}" for s in samples))
    print(f"growth: {(samples[-1] - samples[0]) / 2**20:+.1f} MiB over {done} requests; "
          f"last half {(samples[-1] - samples[len(samples) // 2]) / 2**20:+.1f} MiB")
    if args.tracemalloc:
        first, last = snaps
        total = sum(s.size for s in last.statistics("filename")) - sum(
            s.size for s in first.statistics("filename"))
        print(f"\ntracemalloc: Python-allocated memory {total / 2**20:+.2f} MiB; biggest growths:")
        for stat in last.compare_to(first, "traceback")[:25]:
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
            for line in stat.traceback.format(most_recent_first=True):
                print("      " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
