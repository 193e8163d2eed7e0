"""What a connector reset costs over raw ldap3 doing the same password writes.

    .venv/bin/python bench/bench_reset.py [--users 100] [--runs 3]
                                          [--directory openldap|active_directory|both]

Starts a throwaway server (tests/servers), creates `--users` users, then, in the same
process against the same server and service account:

- raw ldap3: one connection, bound once, doing the bare write for each user
  (OpenLDAP: the RFC 3062 Password Modify exop; AD: one unicodePwd REPLACE);
- the connector: `find_user` + `reset_password` for each user, on one connector,
  which keeps its service connection and caches the password policy
  (`policy_cache_seconds`), so the difference is the lookup, pre-validation and
  (OpenLDAP) the pwdReset/unlock follow-up modify.

Times are wall clock with nothing else instrumented; the raw and connector passes
alternate `--runs` times and the medians are printed, with the ratio and the
overhead per reset. Peak Python memory (tracemalloc, which slows code it traces
~3x) and the LDAP requests per reset (binds and unbinds excluded; counted where the
answer is read) are measured in a separate pass afterwards, never during a timed one.
On a loaded machine the times vary run to run; the request count does not.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ldap3
from pydantic import SecretStr

from connectors._ldap import open_connection
from connectors.base import LookupKind, UserQuery
from tests.servers.base import DirectoryEnv

INITIAL = "Initial-Pass-1"


@contextlib.contextmanager
def _openldap(root: Path) -> Iterator[DirectoryEnv]:
    from tests.servers._process import stop_process
    from tests.servers.slapd import _start

    env, proc = _start(root)
    try:
        yield env
    finally:
        env.close()
        stop_process(proc)


@contextlib.contextmanager
def _samba(root: Path) -> Iterator[DirectoryEnv]:
    from tests.servers.samba import running_samba

    with running_samba(root) as env:
        yield env


def _timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall clock and this process's CPU (the client side: the server is another
    process), in seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - started, time.process_time() - cpu


def _untimed(run: Callable[[], None]) -> tuple[int, Counter[str]]:
    """Peak traced memory and the LDAP requests answered, by type (counted where the
    answer is read: connectors/_ldap_send.py sends its own bytes, not through
    BaseStrategy.send, and both register the request ldap3 reads the answer for)."""
    from ldap3.strategy.base import BaseStrategy

    sent: Counter[str] = Counter()
    original = BaseStrategy.get_response

    def counting(self: Any, message_id: int, *args: Any, **kwargs: Any) -> Any:
        kind = (self._outstanding or {}).get(message_id, {}).get("type", "?")
        if kind not in ("bindRequest", "unbindRequest"):
            sent[kind] += 1
        return original(self, message_id, *args, **kwargs)

    BaseStrategy.get_response = counting
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1], sent
    finally:
        tracemalloc.stop()
        BaseStrategy.get_response = original


class _Passes:
    """The two workloads; each call writes a password no earlier call used (history)."""

    def __init__(self, kind: str, env: DirectoryEnv, logins: list[str], dns: dict[str, str]):
        self.kind, self.env, self.logins, self.dns = kind, env, logins, dns
        self._round = 0

    def _password(self, tag: str, n: int) -> str:
        return f"{tag}-Pass-{self._round}-{n}-xY"

    def raw(self) -> None:
        self._round += 1
        conn = open_connection(self.env.settings)
        try:
            for n, login in enumerate(self.logins):
                password = self._password("Raw", n)
                if self.kind == "openldap":
                    conn.extend.standard.modify_password(self.dns[login], new_password=password)
                else:
                    value = f'"{password}"'.encode("utf-16-le")
                    changes = {"unicodePwd": [(ldap3.MODIFY_REPLACE, [value])]}
                    conn.modify(self.dns[login], changes)
        finally:
            conn.unbind()

    def connector(self) -> None:
        self._round += 1
        conn = self.env.connector()
        try:
            for n, login in enumerate(self.logins):
                user = conn.find_user(UserQuery(LookupKind.LOGIN, login))
                conn.reset_password(user, SecretStr(self._password("Conn", n)))
        finally:
            conn.close()


def bench(kind: str, users: int, runs: int) -> None:
    starter = _openldap if kind == "openldap" else _samba
    with tempfile.TemporaryDirectory() as tmp, starter(Path(tmp) / kind) as env:
        logins = [f"b{n:05d}" for n in range(users)]
        for login in logins:
            env.create_user(login, INITIAL)
        finder = env.connector()
        dns = {login: finder.find_user(UserQuery(LookupKind.LOGIN, login)).dn for login in logins}
        finder.close()
        time.sleep(1.1)  # past any one-second pwdChangedTime granularity
        passes = _Passes(kind, env, logins, dns)

        raw_times: list[float] = []
        conn_times: list[float] = []
        raw_cpu: list[float] = []
        conn_cpu: list[float] = []
        for _ in range(runs):
            for run, times, cpus in (
                (passes.raw, raw_times, raw_cpu),
                (passes.connector, conn_times, conn_cpu),
            ):
                wall, cpu = _timed(run)
                times.append(wall / users * 1000)
                cpus.append(cpu / users * 1000)
        raw_mem, raw_sent = _untimed(passes.raw)
        conn_mem, conn_sent = _untimed(passes.connector)

        raw_ms, conn_ms = statistics.median(raw_times), statistics.median(conn_times)
        print(f"{kind}: {users} resets x {runs} runs (median; per run in brackets)")
        print(f"  raw ldap3  {raw_ms:7.2f} ms/reset  [{', '.join(f'{t:.2f}' for t in raw_times)}]")
        print(
            f"  connector  {conn_ms:7.2f} ms/reset  [{', '.join(f'{t:.2f}' for t in conn_times)}]"
        )
        print(f"  ratio      {conn_ms / raw_ms:7.2f}x   overhead {conn_ms - raw_ms:+.2f} ms/reset")
        print(
            f"  client CPU  raw {statistics.median(raw_cpu):.3f} ms/reset, "
            f"connector {statistics.median(conn_cpu):.3f} ms/reset"
        )
        for name, sent in (("raw ldap3", raw_sent), ("connector", conn_sent)):
            kinds = ", ".join(f"{k} {v / users:g}" for k, v in sorted(sent.items()))
            print(f"  {name:<10} {sum(sent.values()) / users:5.2f} LDAP requests/reset ({kinds})")
        print(
            f"  memory (separate pass, tracemalloc peak)  raw {raw_mem / 1024:.1f} KiB, "
            f"connector {conn_mem / 1024:.1f} KiB ({conn_mem / max(raw_mem, 1):.2f}x)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--directory", choices=["openldap", "active_directory", "both"], default="both"
    )
    args = parser.parse_args()
    kinds = ["openldap", "active_directory"] if args.directory == "both" else [args.directory]
    for kind in kinds:
        bench(kind, args.users, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
