"""Relay CPU per request: the real relay process (SQLite), one agent and one portal
client over HTTP, each request making the calls a reset makes through the relay
(submit, lease, post result, fetch result; with --permit also the write permit).
Prints the relay's CPU time (user + system, from /proc) per request and per HTTP
call, and the wall time.

    .venv/bin/python bench/bench_relay_cpu.py [--requests 400] [--threads 1]
                                              [--runs 1] [--py-spy stacks.txt]

With --runs N each figure is the median of N runs (a fresh relay each). With --py-spy
(pip install py-spy: not a project dependency) the relay is sampled during the
measured part and its collapsed stacks written to that file;
bench/stacks_summary.py prints where the time goes.

Uses only tests/servers/relay.py helpers that older checkouts have too, so the same
script measures a "before" tree: WRITEBACK_TREE=/path/to/old/tree python bench/...
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

# WRITEBACK_TREE=/path/to/old/tree measures that tree's relay, agent client and portal
# client; without it, this checkout's (on the path through the editable install).
if os.environ.get("WRITEBACK_TREE"):
    sys.path.insert(0, os.environ["WRITEBACK_TREE"])

from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope, start_relay

RESULT = b'{"result":{"status":"succeeded","request_id":"x"},"sig":{"kid":"k","value":"v"}}'
CALLS_PER_REQUEST = 4
PERMIT = [False]  # --permit: ask for a write permit too, as the agent does (5 calls)


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
            if PERMIT[0]:
                transport.permit(lease, uuid.uuid4().hex * 2, ordered=True)
            transport.complete(lease, RESULT)
            portal.wait_result(request_id, timeout=5)
            latencies.append(time.perf_counter() - started)


def _py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([exe, "record", "-p", str(pid), "-f", "raw", "-r", "200",
                             "-o", out, "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--log-level", default="info", help="the relay's (default info)")
    parser.add_argument("--py-spy", metavar="FILE", help="sample the relay into FILE")
    parser.add_argument("--permit", action="store_true", help="a permit call per request too")
    args = parser.parse_args()
    PERMIT[0] = args.permit
    calls = CALLS_PER_REQUEST + args.permit
    runs = [one_run(args) for _ in range(args.runs)]
    done = runs[0][0]
    cpu = statistics.median(r[1] / r[0] for r in runs)
    rate = statistics.median(r[0] / r[2] for r in runs)
    p50 = statistics.median(r[3] for r in runs)
    print(f"requests          {done} ({args.threads} thread(s), {calls} calls each)"
          + (f", median of {args.runs} runs" if args.runs > 1 else ""))
    print(f"relay CPU         {cpu * 1000:.2f} ms/request, "
          f"{cpu * 1000 / calls:.2f} ms/call"
          + (f"  (runs: {' '.join(f'{r[1] * 1000 / r[0]:.2f}' for r in runs)})"
             if args.runs > 1 else ""))
    print(f"throughput        {rate:.0f} requests/s")
    print(f"latency p50       {p50 * 1000:.1f} ms")
    return 0


def one_run(args: argparse.Namespace) -> tuple[int, float, float, float]:
    """(requests, relay CPU seconds, wall seconds, median latency) of one run."""
    spy: subprocess.Popen[bytes] | None = None
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
            if args.py_spy:
                spy = _py_spy(relay.proc.pid, args.py_spy)
                time.sleep(1.0)  # py-spy attaches
            cpu0, wall0 = _cpu_seconds(relay.proc.pid), time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu = _cpu_seconds(relay.proc.pid) - cpu0
            wall = time.perf_counter() - wall0
        finally:
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(30)
            relay.stop()
    return len(latencies), cpu, wall, statistics.median(latencies)


if __name__ == "__main__":
    raise SystemExit(main())
