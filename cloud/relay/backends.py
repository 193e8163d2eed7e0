"""Which `RelayStore` a relay opens: SQLite (the `db` file, the default) or PostgreSQL
(`database_url`, for several replicas on one database). The PostgreSQL module is
imported only when asked for, so a SQLite relay does not need psycopg."""

from __future__ import annotations

from cloud.relay.settings import RelayServerSettings
from cloud.relay.store import RelayStore


class DatabaseUnavailable(RuntimeError):
    """The store could not be opened; the message names the database, never a secret."""


def open_store(settings: RelayServerSettings) -> RelayStore:
    if settings.database_url is not None:
        from cloud.pg_store import open_errors
        from cloud.relay.store_postgres import PostgresStore

        try:
            return PostgresStore(
                settings.database_url.get_secret_value(), max_connections=settings.db_pool_size
            )
        except open_errors() as exc:
            raise DatabaseUnavailable(
                f"cannot open {settings.database_label()}: {type(exc).__name__}: {exc}"
            ) from exc
    from cloud.relay.store_sqlite import SQLiteStore

    return SQLiteStore(settings.db)
