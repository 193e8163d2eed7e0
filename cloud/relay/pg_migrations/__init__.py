"""Versioned schema migrations of the PostgreSQL relay store, applied at start.

The SQL files `NNNN_description.sql` in this package, recorded in
`relay_schema_migrations`; the runner (one transaction, advisory lock, refusing a
newer schema) and the rules for new files are in cloud/pg_migrate.py.
"""

from __future__ import annotations

from cloud.pg_migrate import Migrations, SchemaTooNew

__all__ = ["RELAY", "SchemaTooNew", "migrations"]

# The lock key is the ASCII of "wb_relay" (the portal's is "wb_portl").
RELAY = Migrations(
    owner="relay", package=__name__, table="relay_schema_migrations", lock_name=b"wb_relay"
)
migrations = RELAY.migrations
