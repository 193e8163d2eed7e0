"""The connection half of the relay's and the portal's PostgreSQL stores.

- The schema is migrated first, on a plain connection (cloud/pg_migrate.py): an
  unreachable database fails there at once with libpq's reason, instead of as a pool
  timeout.
- Then a psycopg_pool pool of autocommit connections: `_conn()` gives one (each
  statement its own transaction, one round trip), `_tx()` one inside a transaction.
- After a database restart or failover every idle pooled connection is dead: the
  call that meets the first one fails (it cannot know whether its statement ran),
  and the pool is checked at once, so the next calls get live ones instead of
  failing one dead connection at a time.
- The DSN is never logged or shown: `repr` names host, port and database only.

Importing it without psycopg installed fails with the command that installs it (the
stores import it before anything of psycopg's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg_pool: "
        "pip install 'writeback-agent[postgres]'"
    ) from exc

import structlog

from cloud.pg_migrate import Migrations, SchemaTooNew


def open_errors() -> tuple[type[Exception], ...]:
    """What opening a store raises when the database is unreachable or too new.
    (psycopg's messages name host and port, never the password.)"""
    return (psycopg.Error, PoolTimeout, SchemaTooNew)


class PostgresConnections:
    """Base class of a PostgreSQL store: migrates `migrations` and opens the pool."""

    def __init__(
        self, dsn: str, migrations: Migrations, *, application_name: str,
        min_connections: int = 1, max_connections: int = 10, connect_timeout: float = 10.0,
    ) -> None:
        self._log = structlog.get_logger(f"writeback.{migrations.owner}")
        self._migrations = migrations
        params = conninfo_to_dict(dsn)
        self._where = "{}:{}/{}".format(*(params.get(k, "") for k in ("host", "port", "dbname")))
        with psycopg.connect(dsn, connect_timeout=max(1, round(connect_timeout)),
                             application_name=application_name) as conn:
            applied = migrations.migrate(conn)
        if applied:
            self._log.info("store.migrated", versions=applied, database=self._where)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn, min_size=min_connections, max_size=max_connections, open=False,
            name=application_name, timeout=30.0,
            kwargs={"autocommit": True, "application_name": application_name},
        )
        self._pool.open(wait=True, timeout=connect_timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r})"

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection: each statement is its own transaction."""
        with self._checked(), self._pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction (committed at the end, rolled back on
        an exception)."""
        with self._checked(), self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextlib.contextmanager
    def _checked(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError:
            self._log.warning("store.connection_lost", database=self._where)
            self._pool.check()
            raise

    def schema_version(self) -> int:
        with self._conn() as conn:
            return self._migrations.current_version(conn)

    def close(self) -> None:
        self._pool.close()
