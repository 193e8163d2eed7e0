"""A throwaway PostgreSQL cluster for the relay store tests: initdb + pg_ctl.

One cluster per test session, in its own temp dir: `initdb` (trust auth; nothing but
loopback can reach it), `pg_ctl start -w` on a free 127.0.0.1 port with the Unix
socket in the temp dir too, `pg_ctl stop -m fast` at exit. Tests get a fresh database
each (`postgres_dsn`), so they never see each other's rows.

The cluster is tuned for tests, not durability (fsync and synchronous_commit off):
a crash of the test machine loses nothing anyone wants.

initdb and postgres refuse to run as root; under root (CI containers) both run as the
`postgres` system user (created by the Debian package) through runuser, and the temp
dir is handed to that user. Debian keeps the binaries in /usr/lib/postgresql/<ver>/bin,
off PATH; the newest installed version is used. Missing binaries skip locally and
fail under CI=true, naming the package (tests/servers/_process.py).

    server = start_postgres()
    dsn = server.create_database()      # postgresql://postgres@127.0.0.1:PORT/wb_...
    ...
    server.stop()
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers._process import ServerUnavailable, free_port, require_binary

SUPERUSER = "postgres"
_names = itertools.count(1)

_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_min_error_statement = panic
"""


def _bin_dirs() -> tuple[str, ...]:
    """Debian's versioned bin dirs, newest first (lexical order would put 9 above 15)."""
    dirs = glob.glob("/usr/lib/postgresql/*/bin")

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    return tuple(sorted(dirs, key=version, reverse=True))


def _runas() -> list[str]:
    """The prefix that runs a server binary as a non-root user (empty when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ServerUnavailable(
            "PostgreSQL refuses to run as root and there is no 'postgres' user: "
            "install the Debian package 'postgresql' (it creates one)"
        ) from None
    return [require_binary("runuser", "util-linux"), "-u", SUPERUSER, "--"]


@dataclass
class PostgresServer:
    """A running throwaway cluster; `dsn()` names a database on it."""

    port: int
    root: Path
    pg_ctl: str
    runas: list[str]
    host: str = "127.0.0.1"
    _databases: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg
        from psycopg import sql

        name = name or f"wb_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            # FILE_COPY: copying the small template is faster than WAL-logging it.
            conn.execute(
                sql.SQL("CREATE DATABASE {} STRATEGY = FILE_COPY").format(sql.Identifier(name))
            )
        self._databases.append(name)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self._databases:
            self._databases.remove(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def restart(self) -> None:
        """A fast restart (what a failover looks like to clients): every open
        connection is cut, the data stays."""
        done = subprocess.run(
            [*self.runas, self.pg_ctl, "-D", str(self.data_dir), "-l", str(self.log_path),
             "restart", "-m", "fast", "-w", "-t", "60"],
            capture_output=True, timeout=120, check=False,
        )
        if done.returncode:
            raise RuntimeError(f"pg_ctl restart failed:\n{done.stderr.decode()}")

    def stop_only(self, mode: str = "fast") -> None:
        """Stop the server, keep its files."""
        if self.data_dir.exists():
            subprocess.run(
                [*self.runas, self.pg_ctl, "-D", str(self.data_dir), "stop", "-m", mode, "-w",
                 "-t", "30"],
                capture_output=True, timeout=60, check=False,
            )

    def stop(self) -> None:
        self.stop_only()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, ready_timeout: float = 60) -> PostgresServer:
    """initdb a cluster in a new temp dir and start it; the caller stops it."""
    dirs = _bin_dirs()
    initdb = require_binary("initdb", "postgresql", extra_dirs=dirs)
    pg_ctl = require_binary("pg_ctl", "postgresql", extra_dirs=dirs)
    runas = _runas()
    # Not under pytest's basetemp: that is 0700 root, which the postgres user cannot cross.
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    if runas:
        entry = pwd.getpwnam(SUPERUSER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    try:
        made = subprocess.run(
            [*runas, initdb, "-D", str(root / "data"), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"],
            capture_output=True, timeout=120, check=False,
        )
        if made.returncode:
            raise RuntimeError(f"initdb failed ({made.returncode}):\n{made.stderr.decode()}")
        base_conf = (root / "data" / "postgresql.conf").read_text()
        last_error = ""
        for _ in range(3):  # a free port can be taken between probe and bind
            port = free_port()
            (root / "data" / "postgresql.conf").write_text(
                base_conf + _CONF.format(port=port, socket_dir=root)
            )
            server = PostgresServer(port=port, root=root, pg_ctl=pg_ctl, runas=runas)
            started = subprocess.run(
                [*runas, pg_ctl, "-D", str(server.data_dir), "-l", str(server.log_path), "-w",
                 "-t", str(int(ready_timeout)), "start"],
                capture_output=True, timeout=ready_timeout + 30, check=False,
            )
            if started.returncode == 0 and _accepts(server, deadline=time.monotonic() + 10):
                return server
            last_error = server.log()[-3000:] or started.stderr.decode()
            server.stop_only("immediate")
            if "address already in use" not in last_error.lower():
                break
        raise RuntimeError(f"PostgreSQL did not start:\n{last_error}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _accepts(server: PostgresServer, *, deadline: float) -> bool:
    import psycopg

    while time.monotonic() < deadline:
        try:
            with psycopg.connect(server.dsn(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.2)
    return False


def require_psycopg() -> None:
    """Skip (fail under CI) when the driver is not installed: the dev group has it."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise ServerUnavailable(
            "psycopg 3 is not installed: pip install 'writeback-agent[postgres]' "
            "(scripts/bootstrap installs the test group, which includes it)"
        ) from None
