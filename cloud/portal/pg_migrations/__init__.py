"""Versioned schema migrations of the portal's PostgreSQL store, applied at start.

The same scheme as the relay's (cloud/relay/pg_migrations): files `NNNN_name.sql`,
applied in order in ONE transaction, recorded in `portal_schema_migrations`, behind
a transaction-scoped advisory lock so portals starting together migrate once. The
portal keeps its own version table and lock key, and every table it creates starts
with `portal_`: it can share the relay's database, and each side upgrades on its own.

Never edit a released file; add the next number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

# pg_advisory_xact_lock key: the ASCII of "wb_portl" as a signed 64-bit integer
# (the relay's is "wb_relay": the two never wait for each other).
ADVISORY_LOCK_KEY = int.from_bytes(b"wb_portl", "big", signed=True)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer portal than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this code, by version."""
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two portal migrations share a version: {versions}")
    return found


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Bring the schema up to date; returns the versions applied now (often none).
    `conn` must not be inside a transaction."""
    known = migrations()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS portal_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM portal_schema_migrations")}
        unknown = sorted(applied - {m.version for m in known})
        if unknown:
            newest = max(m.version for m in known) if known else 0
            raise SchemaTooNew(
                f"the portal's tables have schema version {unknown[-1]}, this portal knows "
                f"up to {newest}: upgrade this portal (a newer one migrated the database)"
            )
        done: list[int] = []
        for migration in known:
            if migration.version in applied:
                continue
            # No parameters: psycopg sends the file as is, several statements at once.
            conn.execute(migration.sql.encode("utf-8"))
            conn.execute(
                "INSERT INTO portal_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            done.append(migration.version)
    return done


def current_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT coalesce(max(version), 0) FROM portal_schema_migrations"
    ).fetchone()
    return int(row[0]) if row else 0
