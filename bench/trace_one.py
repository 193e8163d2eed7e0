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
        [--save-log agent.log]

Medians over the requests; the raw ldap3 write's median on the same directory for
comparison. Timestamps are this machine's wall clock (all processes are local). The
agent logs at debug here (request.received is a debug line), a little more CPU than
at info."""

from __future__ import annotations

import argparse
import datetime as dt
import json
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wb-trace-") as tmp:
        root = Path(tmp)
        with open_directory(args.directory, root) as directory:
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
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
