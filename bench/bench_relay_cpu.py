"""Relay CPU per request: the real relay process (SQLite), one agent and one portal
client over HTTP, each request making the calls a reset makes through the relay
(submit, lease, post result, fetch result). Prints the relay's CPU time (user + system,
from /proc) per request and per HTTP call, and the wall time.

    .venv/bin/python bench/bench_relay_cpu.py [--requests 400] [--threads 1]

Uses only tests/servers/relay.py helpers that older checkouts have too, so the same
script measures a "before" tree: WRITEBACK_TREE=/path/to/old/tree python bench/...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

# The tree whose relay, agent client and portal client are measured (tests/ is not
# an installed package, so it comes from the tree itself, as in bench_reset.py).
sys.path.insert(0, os.environ.get("WRITEBACK_TREE") or str(Path(__file__).resolve().parents[1]))

from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope, start_relay

RESULT = b'{"result":{"status":"succeeded","request_id":"x"},"sig":{"kid":"k","value":"v"}}'
CALLS_PER_REQUEST = 4


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _worker(
    relay: RelayProcess, token: str, agent: EnrolledAgent, count: int, latencies: list[float]
) -> None:
    tenant = agent.tenant
    with relay.portal(token) as portal, agent.transport() as transport:
        for _ in range(count):
            started = time.perf_counter()
            request_id = uuid.uuid4().hex
            portal.submit(fake_envelope(tenant, request_id=request_id))
            lease = transport.lease(wait=5)
            if lease is None:
                raise RuntimeError("no lease within 5 s: is the relay overloaded?")
            transport.complete(lease, RESULT)
            portal.wait_result(request_id, timeout=5)
            latencies.append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--log-level", default="info", help="the relay's (default info)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        relay = start_relay(Path(tmp) / "relay", log_level=args.log_level)
        try:
            tenant, token = relay.create_tenant()
            agents = [relay.enroll_agent(tenant) for _ in range(args.threads)]
            _worker(relay, token, agents[0], args.warmup, [])
            per_thread = args.requests // args.threads
            latencies: list[float] = []
            threads = [
                threading.Thread(
                    target=_worker, args=(relay, token, a, per_thread, latencies)
                )
                for a in agents
            ]
            cpu0, wall0 = _cpu_seconds(relay.proc.pid), time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu = _cpu_seconds(relay.proc.pid) - cpu0
            wall = time.perf_counter() - wall0
        finally:
            relay.stop()
    done = len(latencies)
    print(f"requests          {done} ({args.threads} thread(s), {CALLS_PER_REQUEST} calls each)")
    print(f"relay CPU         {cpu * 1000 / done:.2f} ms/request, "
          f"{cpu * 1000 / (done * CALLS_PER_REQUEST):.2f} ms/call")
    print(f"throughput        {done / wall:.0f} requests/s")
    print(f"latency p50       {statistics.median(latencies) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
