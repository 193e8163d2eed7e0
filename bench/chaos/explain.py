"""Why each `in_doubt/redelivered` answer of a kept chaos run was given, from the
agents' logs and journals and the relay's database (`--keep DIR`):

    .venv/bin/python -m bench.chaos.explain DIR/slapd-or-samba-run-root [-v]

For each request a second agent answered `in_doubt/redelivered`, it finds the agent
the relay granted the write permit to (`permit_agent`) and what that agent's journal
says: `writing` (it died mid-write), `done/succeeded` (it wrote and answered, but the
answer never reached the relay before the lease ran out), or no row (it was killed
after the permit and before its synced "writing" mark, so it wrote nothing).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

Event = tuple[str, str, str, str, str, str]  # time, agent dir, event, status, reason, detail


def _events(agents: list[Path]) -> tuple[dict[str, str], dict[str, list[Event]]]:
    names: dict[str, str] = {}  # agent_id -> agent directory name
    events: dict[str, list[Event]] = defaultdict(list)
    for agent in agents:
        for line in (agent / "agent.log").read_text(errors="replace").splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("event") == "agent.started":
                names[d["agent_id"]] = agent.name
            if rid := d.get("request_id"):
                events[rid].append((d["timestamp"][11:23], agent.name, d["event"],
                                    d.get("status") or "", d.get("reason") or "",
                                    (d.get("detail") or "")[:60]))
    return names, events


def _journal(agent: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(agent / "data" / "journal.sqlite3") as conn:
        return {r[0]: (r[1], r[2] or "") for r in conn.execute(
            "SELECT id, state, status FROM requests")}


def explain(root: Path) -> tuple[Counter[str], list[tuple[str, str, str, list[Event]]]]:
    agents = sorted(p for p in (root / "system").glob("agent*") if p.is_dir())
    names, events = _events(agents)
    journals = {a.name: _journal(a) for a in agents}
    with sqlite3.connect(root / "system" / "relay" / "relay.sqlite3") as conn:
        permit = dict(conn.execute("SELECT request_id, permit_agent FROM requests"))
    counts: Counter[str] = Counter()
    rows = []
    for rid, evs in sorted(events.items(), key=lambda kv: min(kv[1])):
        if not any(e[2] == "request.failed" and e[3] == "in_doubt" and e[4] == "redelivered"
                   for e in evs):
            continue
        holder = names.get(permit.get(rid) or "", "?")
        row = journals.get(holder, {}).get(rid)
        answered_itself = any(e[1] == holder and e[4] == "redelivered" for e in evs)
        if row == ("done", "succeeded"):
            kind = "holder wrote and answered succeeded; the answer missed the lease"
        elif (row is not None and row[0] == "writing") or any(
                e[2] in ("request.in_doubt", "request.interrupted") for e in evs):
            kind = "holder died mid-write (journal said writing)"
        elif row is None or (row == ("done", "in_doubt") and answered_itself):
            kind = "holder killed after the permit, before its journal mark: wrote nothing"
        else:
            kind = f"holder journal {row}"
        counts[kind] += 1
        rows.append((rid, holder, kind, sorted(evs)))
    return counts, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the --keep directory of one chaos run")
    parser.add_argument("-v", "--verbose", action="store_true", help="each request's timeline")
    args = parser.parse_args(argv)
    counts, rows = explain(args.root)
    if args.verbose:
        for rid, holder, kind, evs in rows:
            print(f"{rid} permit holder {holder}: {kind}")
            for e in evs:
                print("   ", *e)
    print(f"{len(rows)} in_doubt/redelivered answers")
    for kind, n in counts.most_common():
        print(f"  {n:4} {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
