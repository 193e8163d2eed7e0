"""Read the journal without changing it, for `check` and `status`.

`run` opens the journal read-write (agent.app) and refuses to start when SQLite cannot
use the file; `check` must refuse the same file, and neither `check` nor `status`
(often run as root) may create or alter the journal the service user owns.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class UnusableJournal(Exception):
    """The journal file exists but SQLite cannot use it; the message says what to do."""


def unusable_message(path: Path, error: BaseException) -> str:
    """The one line `run`, `check` and `status` print for a journal SQLite refuses."""
    return (
        f"journal {path} is not a usable SQLite database ({error}): stop the agent, "
        "move the file away (it holds only recent request ids) and start again"
    )


def journal_counts(path: Path) -> dict[str, int] | None:
    """Requests per state, read-only; None when there is no journal yet."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise UnusableJournal(unusable_message(path, exc)) from None
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: garbage fails
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "requests" not in tables:
            return {}  # created empty (first start interrupted); `run` adds the schema
        rows = conn.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall()
    except sqlite3.Error as exc:
        raise UnusableJournal(unusable_message(path, exc)) from None
    finally:
        conn.close()
    return {str(state): int(n) for state, n in rows}
