"""Versioned schema migrations of the PostgreSQL relay store, applied at start.

Each migration is a file `NNNN_description.sql` in this package; `NNNN` is its
version. `migrate` applies the ones a database has not seen, in order, each recorded
in `relay_schema_migrations`, all in ONE transaction: a failing migration leaves the
schema as it was (PostgreSQL DDL is transactional).

Several relays may start at once against a new database. They serialize on a
transaction-scoped advisory lock taken before anything else (even before
`CREATE TABLE IF NOT EXISTS`, which is not safe against a concurrent twin); the
second one then finds everything applied and does nothing. A database that has a
version this code does not know (a newer relay migrated it) is refused: running old
code on a newer schema is how rows get silently misread.

Rules for new migrations: never edit a released file; add the next number. Keep them
additive where possible (new columns nullable or with defaults), so a relay one
version behind keeps working during a rolling upgrade until it is restarted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

# pg_advisory_xact_lock key: the ASCII of "wb_relay" as a signed 64-bit integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"wb_relay", "big", signed=True)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer relay than this one."""


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
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Bring the schema up to date; returns the versions applied now (often none).
    `conn` must not be inside a transaction."""
    known = migrations()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS relay_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM relay_schema_migrations")}
        unknown = sorted(applied - {m.version for m in known})
        if unknown:
            newest = max(m.version for m in known) if known else 0
            raise SchemaTooNew(
                f"the relay database has schema version {unknown[-1]}, this relay knows up to "
                f"{newest}: upgrade this relay (a newer one migrated the database)"
            )
        done: list[int] = []
        for migration in known:
            if migration.version in applied:
                continue
            # No parameters: psycopg sends the file as is, several statements at once.
            conn.execute(migration.sql.encode("utf-8"))
            conn.execute(
                "INSERT INTO relay_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            done.append(migration.version)
    return done


def current_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM relay_schema_migrations").fetchone()
    return int(row[0]) if row else 0
