"""Where the time of one reset goes at 1 outstanding: the real system (relay, agent,
directory) as bench_e2e.py starts it, requests one after another, each split into

  submit     the portal's submit call (sign + seal done before)
  to agent   submit answered -> the agent logs request.received (the relay wakes the
             agent's lease long-poll, the lease answer, the agent verifies and opens)
  agent      request.received -> request.succeeded (directory, permit, journal; the
             duration_ms the agent logs)
  pre-write  request.received -> request.writing: the agent's own steps before the
             write (decryption, the user's lookup, the relay's write permit and the
             journal's synced mark); part of `agent`
  back       request.succeeded -> the portal holds the verified result (the agent's
             result post, the relay wakes the portal's result long-poll)
  total      the portal's submit -> the verified result in the portal's hands
  write      request.writing -> request.succeeded: the directory write as the agent
             makes it (its modify, then signing and journaling the answer), to set
             beside the raw write
  outside    total minus the directory write (request.writing -> request.succeeded:
             the write, then signing and journaling the answer): everything the
             system adds to the write, without the DC's own spread (a Samba write
             varies by several ms from one request to the next)

    .venv/bin/python bench/trace_one.py [--directory slapd|samba] [--requests 300]
        [--save-log agent.log] [--across]

With --across the relay and the agent also stamp the edges of each step (bench/_trace,
loaded through PYTHONPATH: nothing of it is in the product), and a second table lines
them up: the median time of each edge from the portal's call, across the three
processes, and the step to it from the edge before.

Medians over the requests; the raw ldap3 write's median on the same directory for
comparison. Timestamps are this machine's wall clock (all processes are local). The
agent logs at debug here (request.received is a debug line), a little more CPU than
at info."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_e2e import (
    INITIAL,
    open_directory,
    raw_jobs,
    running_system,
)
from cloud.relay.client import PortalClient
from cloud.relay.submitter import Submitter
from cloud.relay.waiter import ResultWaiter
from cloud.sdk import build_request, verify_result
from tests.servers.base import unique_login


def _stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", choices=("slapd", "samba"), default="slapd")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--portal",
        choices=("wait", "shared", "direct"),
        default="direct",
        help="one call that submits and waits (submit_and_wait, what bench_e2e.py's "
        "portal makes for a request alone; `submit` is then empty), submit and wait "
        "through Submitter/ResultWaiter, or PortalClient's submit and wait_result",
    )
    parser.add_argument(
        "--save-log",
        type=Path,
        help="keep the agent's debug log (JSON lines) here, for splits of your own",
    )
    parser.add_argument(
        "--across",
        action="store_true",
        help="also time each step inside the relay and the agent (bench/_trace)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wb-trace-") as tmp:
        root = Path(tmp)
        edges = root / "edges"
        answered: dict[str, float] = {}
        with open_directory(args.directory, root) as directory:
            if args.across:  # after the directory is up: only the relay and the agent
                edges.mkdir()
                os.environ["WB_TRACE_DIR"] = str(edges)
                os.environ["PYTHONPATH"] = os.pathsep.join(
                    filter(None, [str(Path(__file__).with_name("_trace")),
                                  os.environ.get("PYTHONPATH")])
                )
            logins = [unique_login("tr") for _ in range(args.requests + 10)]
            dns = [directory.env.create_user(login, INITIAL) for login in logins]
            raw = raw_jobs(directory, dns[: min(len(dns), 100)], 1)
            with (
                running_system(
                    root / "system", directory, args.workers, log_level="debug"
                ) as system,
                PortalClient(system.relay.base_url, system.token) as client,
            ):
                marks: dict[str, list[float]] = {}
                waiter = ResultWaiter(client) if args.portal == "shared" else None
                submit = Submitter(client).submit if waiter is not None else client.submit
                wait = waiter.wait if waiter is not None else client.wait_result
                for login in logins:
                    request = build_request(
                        system.signer,
                        tenant=system.tenant,
                        agent_group="bench",
                        agents=system.agents,
                        op="reset",
                        user_kind="login",
                        user_value=login,
                        new_password=f"Nw-{time.monotonic_ns()}-pass!",
                    )
                    body = request.to_bytes()
                    t0 = time.time()
                    if args.portal == "wait":
                        t1 = t0
                        answer = client.submit_and_wait(body, timeout=60)
                    else:
                        submit(body)
                        t1 = time.time()
                        answer = wait(request.id, timeout=60)
                    answered[request.id] = time.time()
                    result = verify_result(answer, request=request, trusted_agents=system.agents)
                    t2 = time.time()
                    if result.status != "succeeded":
                        raise RuntimeError(f"{request.id}: {result.status}")
                    marks[request.id] = [t0, t1, t2]
                if waiter is not None:
                    waiter.close()
                time.sleep(0.5)
                log = (system.root / "agent1" / "agent.log").read_text()
                if args.save_log is not None:
                    args.save_log.write_text(log)
        _report(args.directory, raw.pct(0.5), marks, log)
        if args.across:
            _report_across(marks, answered, edges)
    return 0


def _report_across(
    marks: dict[str, list[float]], answered: dict[str, float], edges: Path
) -> None:
    """Each edge's median time from the portal's call (its first time between that call
    and the next request's), for the edges at least half the requests have."""
    stamps: list[tuple[float, str]] = []  # (when, edge)
    for path in edges.glob("*.trace"):
        for line in path.read_text().splitlines():
            stamp, _, edge = line.partition(" ")
            stamps.append((float(stamp), edge))
    timed = _opened_at(sorted(stamps))
    offsets: dict[str, list[float]] = {}
    starts = [t0 for t0, _t1, _t2 in marks.values()]
    windows = list(marks.items())[10:]  # warm-up left out
    for n, (request_id, (t0, _t1, t2)) in enumerate(windows, start=10):
        # Up to the next request's call: what a request sets off after its answer (the
        # agent hearing the relay took its result) is still its own.
        end = starts[n + 1] if n + 1 < len(starts) else t2 + 1.0
        inside = [(at, e) for at, e, opened in timed if t0 <= opened < end]
        inside += [(answered[request_id], "portal: answer in hand"), (t2, "portal: verified")]
        first: dict[str, float] = {}
        for at, edge in sorted(inside):
            first.setdefault(edge, at)
        for edge, at in first.items():
            offsets.setdefault(edge, []).append((at - t0) * 1000)
    rows = sorted(
        (statistics.median(v), k)
        for k, v in offsets.items() if len(v) >= len(windows) / 2
    )
    print(f"\nacross the processes, {len(windows)} requests, median ms from the portal's call")
    before = 0.0
    for at, edge in rows:
        print(f"  {edge:55} {at:8.2f}  {at - before:+7.2f}")
        before = at


def _report(directory: str, raw_p50: float, marks: dict[str, list[float]], log: str) -> None:
    """Medians of each part, from the portal's marks and the agent's debug log."""
    seen: dict[str, dict[str, float]] = {}
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") in ("request.received", "request.writing", "request.succeeded"):
            seen.setdefault(event["request_id"], {})[event["event"]] = _stamp(event["timestamp"])
    parts: dict[str, list[float]] = {
        k: []
        for k in ("submit", "to agent", "agent", "pre-write", "back", "total", "write", "outside")
    }
    for request_id, (t0, t1, t2) in list(marks.items())[10:]:  # warm-up left out
        agent = seen.get(request_id, {})
        if len(agent) != 3:
            continue
        received, done = agent["request.received"], agent["request.succeeded"]
        write = done - agent["request.writing"]
        for name, value in (
            ("submit", t1 - t0),
            ("to agent", received - t1),
            ("agent", done - received),
            ("pre-write", agent["request.writing"] - received),
            ("back", t2 - done),
            ("total", t2 - t0),
            ("write", write),
            ("outside", t2 - t0 - write),
        ):
            parts[name].append(value * 1000)
    print(f"{directory}: {len(parts['total'])} requests one at a time, medians (ms)")
    print(f"  raw ldap3 write p50 {raw_p50:.2f}")
    for name, values in parts.items():
        print(
            f"  {name:9} {statistics.median(values):6.2f}   p90 "
            f"{sorted(values)[int(len(values) * 0.9)]:6.2f}"
        )


# An answer's edge and the edge of the call it answers (bench/_trace/sitecustomize.py).
_CLOSES = {
    "relay: handler returned ": "relay: call in ",
    "agent: call answered ": "agent: call sent ",
    "agent: directory write answered": "agent: directory write",
}


# Long-polls: their answer belongs to the request it brings, whenever the poll began.
_LONG_POLLS = ("lease_many", "leases", "lease")


def _opened_at(stamps: list[tuple[float, str]]) -> list[tuple[float, str, float]]:
    """(when, edge, when its call began): an answer counts for the request whose window
    holds its call, not the next one's (a result post is answered after the portal
    already holds the result and may have sent the next request)."""
    open_calls: dict[str, list[float]] = {}
    out = []
    for at, edge in stamps:
        opened = at
        if edge.rsplit(" ", 1)[-1] in _LONG_POLLS:
            out.append((at, edge, at))
            continue
        for close, start in _CLOSES.items():
            if edge.startswith(close):
                pending = open_calls.get(start + edge[len(close):], [])
                opened = pending.pop(0) if pending else at
                break
        else:
            if edge.startswith(tuple(_CLOSES.values())):  # a call: its answer will come
                open_calls.setdefault(edge, []).append(at)
        out.append((at, edge, opened))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
