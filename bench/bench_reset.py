"""How much the connector costs over raw ldap3 doing the same password resets.

    .venv/bin/python bench/bench_reset.py [--users 100] [--directory openldap|active_directory|both]

Baseline, in the same process against the same server: one ldap3 connection, bound
once as the service account, doing the bare write (OpenLDAP: RFC 3062 Password Modify;
AD: unicodePwd REPLACE) for each user. Measured: the connector's `find_user` +
`reset_password`, which adds the lookup, the state and policy reads, pre-validation
and (OpenLDAP) a fresh TLS connection per call. Prints wall time per reset and the
ratio, and the peak Python memory (tracemalloc) of each run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ldap3  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from connectors._ldap import open_connection  # noqa: E402
from connectors.base import LookupKind, UserQuery  # noqa: E402
from tests.servers.base import DirectoryEnv  # noqa: E402

INITIAL = "Initial-Pass-1"


@contextlib.contextmanager
def _openldap(root: Path) -> Iterator[DirectoryEnv]:
    from tests.servers._process import stop_process
    from tests.servers.slapd import _start

    env, proc = _start(root)
    try:
        yield env
    finally:
        stop_process(proc)


@contextlib.contextmanager
def _samba(root: Path) -> Iterator[DirectoryEnv]:
    from tests.servers.samba import running_samba

    with running_samba(root) as env:
        yield env


def _measure(run: Callable[[], None]) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak


def bench(kind: str, users: int) -> None:
    starter = _openldap if kind == "openldap" else _samba
    with tempfile.TemporaryDirectory() as tmp, starter(Path(tmp) / kind) as env:
        logins = [f"b{n:05d}" for n in range(users)]
        for login in logins:
            env.create_user(login, INITIAL)
        dns = {login: env.connector().find_user(UserQuery(LookupKind.LOGIN, login)).dn for login in logins}
        time.sleep(1.1)

        def raw() -> None:
            conn = open_connection(env.settings)
            try:
                for n, login in enumerate(logins):
                    password = f"Raw-Pass-{n}-xY"
                    if kind == "openldap":
                        conn.extend.standard.modify_password(dns[login], new_password=password)
                    else:
                        value = f'"{password}"'.encode("utf-16-le")
                        conn.modify(dns[login], {"unicodePwd": [(ldap3.MODIFY_REPLACE, [value])]})
            finally:
                conn.unbind()

        def connector() -> None:
            conn = env.connector()
            try:
                for n, login in enumerate(logins):
                    user = conn.find_user(UserQuery(LookupKind.LOGIN, login))
                    conn.reset_password(user, SecretStr(f"Conn-Pass-{n}-xY"))
            finally:
                conn.close()

        raw_s, raw_mem = _measure(raw)
        conn_s, conn_mem = _measure(connector)
        print(f"{kind}: {users} resets")
        print(f"  raw ldap3  {raw_s / users * 1000:7.2f} ms/reset   peak {raw_mem / 1024:8.1f} KiB")
        print(f"  connector  {conn_s / users * 1000:7.2f} ms/reset   peak {conn_mem / 1024:8.1f} KiB")
        print(f"  ratio      {conn_s / raw_s:7.2f}x time          {conn_mem / max(raw_mem, 1):8.2f}x memory")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--directory", choices=["openldap", "active_directory", "both"], default="both")
    args = parser.parse_args()
    kinds = ["openldap", "active_directory"] if args.directory == "both" else [args.directory]
    for kind in kinds:
        bench(kind, args.users)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
