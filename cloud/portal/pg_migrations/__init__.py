"""Versioned schema migrations of the portal's PostgreSQL store, applied at start.

The SQL files `NNNN_name.sql` in this package, recorded in `portal_schema_migrations`
behind the portal's own advisory lock key; the runner is the relay's
(cloud/pg_migrate.py). Every table the portal creates starts with `portal_`: it can
share the relay's database, and each side upgrades on its own.

Never edit a released file; add the next number.
"""

from __future__ import annotations

from cloud.pg_migrate import Migrations, SchemaTooNew

__all__ = ["PORTAL", "SchemaTooNew", "migrations"]

# The lock key is the ASCII of "wb_portl" (the relay's is "wb_relay": the two never
# wait for each other).
PORTAL = Migrations(
    owner="portal", package=__name__, table="portal_schema_migrations", lock_name=b"wb_portl"
)
migrations = PORTAL.migrations
