"""Versioned schema migrations on PostgreSQL, applied at start: one runner for the
relay's and the portal's stores, each with its own files, version table and lock.

Each migration is a file `NNNN_description.sql` in the owner's `pg_migrations`
package; `NNNN` is its version. `migrate` applies the ones a database has not seen,
in order, each recorded in the owner's version table, all in ONE transaction: a
failing migration leaves the schema as it was (PostgreSQL DDL is transactional).

Several replicas may start at once against a new database. They serialize on a
transaction-scoped advisory lock taken before anything else (even before
`CREATE TABLE IF NOT EXISTS`, which is not safe against a concurrent twin); the
second one then finds everything applied and does nothing. The relay and the portal
use different lock keys and version tables, so they can share one database and each
upgrades on its own. A database that has a version this code does not know (newer
code migrated it) is refused: running old code on a newer schema is how rows get
silently misread.

Rules for new migrations: never edit a released file; add the next number. Keep them
additive where possible (new columns nullable or with defaults), so a replica one
version behind keeps working during a rolling upgrade until it is restarted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(RuntimeError):
    """The database was migrated by newer code than this."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class Migrations:
    """The migrations of one owner ("relay", "portal"): the SQL files in `package`,
    recorded in `table`, serialized on the advisory lock named by `lock_name` (eight
    ASCII bytes, read as a signed 64-bit integer)."""

    owner: str
    package: str
    table: str
    lock_name: bytes

    def __post_init__(self) -> None:
        if len(self.lock_name) != 8:
            raise ValueError("the advisory lock name must be 8 bytes")

    @property
    def lock_key(self) -> int:
        """The pg_advisory_xact_lock key."""
        return int.from_bytes(self.lock_name, "big", signed=True)

    def migrations(self) -> list[Migration]:
        """The migrations shipped with this code, by version."""
        found: list[Migration] = []
        for entry in resources.files(self.package).iterdir():
            match = _FILE.match(entry.name)
            if match:
                found.append(
                    Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))
                )
        found.sort(key=lambda m: m.version)
        versions = [m.version for m in found]
        if len(set(versions)) != len(versions):
            raise RuntimeError(f"two {self.owner} migrations share a version: {versions}")
        return found

    def migrate(self, conn: psycopg.Connection[Any]) -> list[int]:
        """Bring the schema up to date; returns the versions applied now (often none).
        `conn` must not be inside a transaction."""
        from psycopg import sql

        known = self.migrations()
        table = sql.Identifier(self.table)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(table)
            )
            rows = conn.execute(sql.SQL("SELECT version FROM {}").format(table))
            applied = {row[0] for row in rows}
            unknown = sorted(applied - {m.version for m in known})
            if unknown:
                newest = max(m.version for m in known) if known else 0
                raise SchemaTooNew(
                    f"the {self.owner}'s tables have schema version {unknown[-1]}, this "
                    f"{self.owner} knows up to {newest}: upgrade this {self.owner} "
                    "(a newer one migrated the database)"
                )
            done: list[int] = []
            for migration in known:
                if migration.version in applied:
                    continue
                # No parameters: psycopg sends the file as is, several statements at once.
                conn.execute(migration.sql.encode("utf-8"))
                conn.execute(
                    sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(table),
                    (migration.version, migration.name),
                )
                done.append(migration.version)
        return done

    def current_version(self, conn: psycopg.Connection[Any]) -> int:
        from psycopg import sql

        query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}")
        row = conn.execute(query.format(sql.Identifier(self.table))).fetchone()
        return int(row[0]) if row else 0
