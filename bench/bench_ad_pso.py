"""What reading msDS-ResultantPSO in every lookup costs on Samba AD (constructed by the
DC on each read), against the lookup the connector makes now (it asks for it only
when a PSO is stricter than the domain in length or complexity), with raw ldap3
doing the same password writes as the baseline, all in one process on one DC.

    .venv/bin/python bench/bench_ad_pso.py [--blocks 8] [--per-block 20]

Three variants, in blocks of `--per-block` resets, their order rotated every block:
raw ldap3 (the bare unicodePwd write, one bound connection), "pso in lookup" (the
connector with its PSO list bypassed, as every lookup was before) and "now" (the
connector as it is). Each reset of a connector is `find_user` + `reset_password`.
Prints per variant the median lookup and reset times, the DC's CPU per reset (the
samba processes' CPU from /proc over the variant's blocks) and the ratios to raw."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from bench.bench_e2e import INITIAL, open_directory, raw_write
from bench.procstat import cpu_seconds
from connectors.active_directory import ActiveDirectoryConnector
from connectors.base import LookupKind, UserQuery
from tests.servers.base import unique_login


def _password() -> str:
    return f"Nw-{time.monotonic_ns()}-pass!"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--per-block", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wb-adpso-") as tmp, \
            open_directory("samba", Path(tmp)) as directory:
        env = directory.env
        logins = [unique_login("ps") for _ in range(args.blocks * args.per_block * 3 + 2)]
        dns = {login: env.create_user(login, INITIAL) for login in logins}
        before, now = (ActiveDirectoryConnector(env.settings) for _ in range(2))
        before._strictest = lambda: None  # type: ignore[method-assign]  # as before
        raw = raw_write(directory)()
        warm = iter(logins[:2])
        for connector in (before, now):  # the connection, the rootDSE, the policies
            connector.password_policy(connector.find_user(UserQuery(LookupKind.LOGIN, next(warm))))

        def connector_reset(connector: ActiveDirectoryConnector) -> Callable[[str], float]:
            def reset(login: str) -> float:
                started = time.perf_counter()
                user = connector.find_user(UserQuery(LookupKind.LOGIN, login))
                looked_up = time.perf_counter()
                connector.reset_password(user, SecretStr(_password()))
                return looked_up - started
            return reset

        def raw_reset(login: str) -> float:
            raw(dns[login], _password())
            return 0.0

        variants: dict[str, Callable[[str], float]] = {
            "raw ldap3": raw_reset,
            "pso in lookup": connector_reset(before),
            "now": connector_reset(now),
        }
        lookups: dict[str, list[float]] = {name: [] for name in variants}
        totals: dict[str, list[float]] = {name: [] for name in variants}
        dc_cpu = dict.fromkeys(variants, 0.0)
        todo = iter(logins[2:])
        names = list(variants)
        for block in range(args.blocks):
            for name in names[block % 3:] + names[: block % 3]:
                pids = directory.pids()
                cpu_before = cpu_seconds(pids)
                for _ in range(args.per_block):
                    started = time.perf_counter()
                    lookups[name].append(variants[name](next(todo)) * 1000)
                    totals[name].append((time.perf_counter() - started) * 1000)
                dc_cpu[name] += cpu_seconds(pids) - cpu_before
        base = statistics.median(totals["raw ldap3"])
        base_cpu = dc_cpu["raw ldap3"] / len(totals["raw ldap3"]) * 1000
        print(f"samba: {args.blocks} blocks of {args.per_block} resets per variant, medians")
        for name in names:
            total, cpu = statistics.median(totals[name]), dc_cpu[name] / len(totals[name]) * 1000
            lookup = f"lookup {statistics.median(lookups[name]):5.2f} ms" if name != "raw ldap3" \
                else " " * 15
            print(f"  {name:14} {lookup}  reset {total:6.2f} ms ({total / base:4.2f}x raw)  "
                  f"DC CPU {cpu:6.2f} ms/reset ({cpu / base_cpu:4.2f}x raw)")
        before.close()
        now.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
