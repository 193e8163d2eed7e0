"""SQLite idempotency journal: request id -> state and signed result.

Why it exists: the relay may deliver a request twice (lease timeout, agent restart,
a replay). A password must never be written twice for one request, and a request
caught mid-write by a crash must be answered `in_doubt`, never silently retried.

States::

    received --mark_writing--> writing --finish--> done
        \\                         |
         \\-------finish--------->  (crash) --recover()--> in_doubt --finish--> done
                                      \\--recover(), permitted--> (forgotten)

A write made under a relay permit (the row has its lease) is forgotten by
`recover()` instead: the relay keeps the permit and its write marker, so the
redelivery asks it, and it answers in_doubt unless the entry provably did not change
(agent/permits.py `write_marker`).

`mark_writing` is the one synced commit (synchronous=FULL) before the LDAP write goes
out, so after a crash, even a power cut, the journal knows a write may have happened.
The pipeline asks for it as soon as it has claimed a write request
(`mark_writing_soon`), so the fsync runs while the request is decrypted, the user
looked up and the relay's write permit asked, and it sends the write only once the
permit is granted and the mark is on disk. (Beside the permit call alone, a disk whose
fsync takes longer than that call made every reset wait for the rest of it.) The
marks asked while one is being synced go together in the next commit, one fsync for
all of them (a burst of requests is leased in one answer: 16 fsyncs in a row were 16
times a disk's sync latency for the last worker); each is durable before its future
is done, as alone. A mark whose write is then not sent is undone (`unmark_writing`)
before the answer is journaled. A "writing" row therefore means "a write may have
gone out", never less.
The other writes (claim, finish, forget) use synchronous=NORMAL: in WAL mode they
survive a crash of the process and are synced with the next FULL commit; a power cut
may lose the latest of them, which costs nothing: a lost claim is claimed again (the
relay's write permit stops a second write) and a lost "done" reads as "writing", so
the request is answered in_doubt. One connection per thread; SQLite serialises
writers and `claim` is one INSERT that does nothing when the id is there, so two
workers handed the same request id cannot both claim it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id           TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    op           TEXT NOT NULL DEFAULT '',
    user_ref     TEXT NOT NULL DEFAULT '',
    status       TEXT,
    result       BLOB,
    received_at  REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_updated ON requests (updated_at);
"""
# Added with the relay's write permits: the lease a write was permitted under (the
# relay takes that permit holder's answer late, after a crash) and whether the relay
# has acknowledged the answer. Added to older journals when opened.
_CACHE_KIB = 256  # SQLite page cache per connection (the default is 2,000 KiB)
_LATER_COLUMNS = (("lease_id", "TEXT"), ("posted", "INTEGER NOT NULL DEFAULT 0"))


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection: committed, or rolled back
    when the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class JournalError(Exception):
    """A journal write that failed (the disk, the file): the write it guards is not sent."""


class State(StrEnum):
    RECEIVED = "received"
    WRITING = "writing"
    IN_DOUBT = "in_doubt"
    DONE = "done"


class ClaimKind(StrEnum):
    NEW = "new"  # first time seen: go ahead
    DONE = "done"  # answered before: send the stored result again, write nothing
    IN_DOUBT = "in_doubt"  # a crash caught it mid-write: answer in_doubt, write nothing
    BUSY = "busy"  # another worker of this agent holds it right now


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    result: bytes | None = None


class Journal:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        # The agent's threads take turns here to write instead of in SQLite's busy
        # handler, which sleeps 1, 2, 5, 10... ms between tries: with 16 workers
        # waiting behind a synced commit, those sleeps were the workers' wait.
        self._writes = threading.Lock()
        self._sync: ThreadPoolExecutor | None = None  # for mark_writing_soon
        self._sync_lock = threading.Lock()
        self._unsynced: list[tuple[str, str | None, Future[None]]] = []
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
            for name, kind in _LATER_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # One connection per worker thread (16 by default): SQLite's default page
            # cache (2 MB each) filled by every worker's lookups and results was about
            # a megabyte of the idle agent's RSS per worker. The journal's calls are
            # key lookups; the OS page cache keeps the file warm.
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._local.conn = conn
        return conn

    def claim(self, request_id: str, *, op: str, user_ref: str, now: float | None = None) -> Claim:
        now = time.time() if now is None else now
        conn = self._conn()
        with self._writes:
            return self._claim(conn, request_id, op, user_ref, now)

    @staticmethod
    def _claim(
        conn: sqlite3.Connection, request_id: str, op: str, user_ref: str, now: float
    ) -> Claim:
        # One statement, so one implicit transaction: a new id (the usual case) is
        # claimed by the insert itself; an id seen before is read after it.
        for _ in range(3):
            inserted = conn.execute(
                "INSERT INTO requests (id, state, op, user_ref, received_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                (request_id, State.RECEIVED, op, user_ref, now, now),
            ).rowcount
            if inserted:
                return Claim(ClaimKind.NEW)
            row = conn.execute(
                "SELECT state, result FROM requests WHERE id = ?", (request_id,)
            ).fetchone()
            if row is None:  # forgotten or pruned since the insert: claim it again
                continue
            if row[0] == State.DONE:
                return Claim(ClaimKind.DONE, bytes(row[1]) if row[1] is not None else None)
            if row[0] == State.IN_DOUBT:
                return Claim(ClaimKind.IN_DOUBT)
            return Claim(ClaimKind.BUSY)
        return Claim(ClaimKind.BUSY)  # dropped again and again meanwhile: redelivered later

    def mark_writing(self, request_id: str, *, lease_id: str | None = None) -> None:
        """The durable mark: fsynced before this returns (and the write goes out).
        `lease_id`: the lease the write was permitted under, so the answer can still be
        posted after a crash (`unposted`)."""
        self._mark_many([(request_id, lease_id)])

    def _mark_many(self, marks: list[tuple[str, str | None]]) -> None:
        """Several marks in one synced commit: all on disk, or none."""
        conn = self._conn()
        now = time.time()
        with self._writes:
            conn.execute("PRAGMA synchronous=FULL")
            try:
                with _immediate(conn):
                    conn.executemany(
                        "UPDATE requests SET state = ?, lease_id = ?, updated_at = ? WHERE id = ?",
                        [(State.WRITING, lease, now, request) for request, lease in marks],
                    )
            finally:
                conn.execute("PRAGMA synchronous=NORMAL")

    def mark_writing_soon(self, request_id: str, *, lease_id: str | None = None) -> Future[None]:
        """`mark_writing` on the journal's sync thread, so the caller can do something
        else meanwhile (the pipeline: decryption, the user's lookup, the relay's write
        permit), together with the other marks asked meanwhile. The write must not go
        out before the future is done; a write that is then not sent is undone with
        `unmark_writing`."""
        done: Future[None] = Future()
        with self._sync_lock:
            if self._sync is None:
                self._sync = ThreadPoolExecutor(1, thread_name_prefix="journal-sync")
            self._unsynced.append((request_id, lease_id, done))
            if len(self._unsynced) == 1:  # else a drain is already due to take it
                self._sync.submit(self._sync_marks)
        return done

    def _sync_marks(self) -> None:
        """On the sync thread: every mark asked so far, in one commit. One drain is
        due at a time: a mark that finds others waiting joins them."""
        with self._sync_lock:
            marks, self._unsynced = self._unsynced, []
        if not marks:
            return
        try:
            self._mark_many([(request_id, lease_id) for request_id, lease_id, _ in marks])
        except BaseException as exc:  # noqa: BLE001  # each asker gets it; the write stays unsent
            for request_id, _, done in marks:
                failed = JournalError(f"the writing mark of {request_id} failed: {exc!r}")
                failed.__cause__ = exc
                done.set_exception(failed)
            return
        for _, _, done in marks:
            done.set_result(None)

    def unmark_writing(self, request_id: str) -> None:
        """A mark whose write was never sent (no permit answered): back to received, so
        `forget` drops it and a redelivery is claimed normally. Not synced: if a crash loses
        this, the row reads "writing" under its lease, which `recover` forgets too."""
        conn = self._conn()
        with self._writes:
            conn.execute(
                "UPDATE requests SET state = ?, lease_id = NULL WHERE id = ? AND state = ?",
                (State.RECEIVED, request_id, State.WRITING),
            )

    def mark_posted(self, *request_ids: str) -> None:
        """The relay has these answers (or has others from another agent): nothing to
        resend. Several (one result batch) in one commit."""
        if not request_ids:
            return
        conn = self._conn()
        with self._writes, _immediate(conn):
            conn.executemany(
                "UPDATE requests SET posted = 1 WHERE id = ?", [(i,) for i in request_ids]
            )

    def unposted(self, newer_than_seconds: float) -> list[tuple[str, str, bytes]]:
        """(request id, lease id, signed result) of written requests whose answer the
        relay never acknowledged (the process died before or while posting it), from
        the last `newer_than_seconds`. Posted again at start-up: the relay takes the
        permit holder's answer until another answer is stored, so the portal learns
        what was written instead of an in_doubt from the agent that redelivery reaches."""
        cutoff = time.time() - newer_than_seconds
        rows = self._conn().execute(
            "SELECT id, lease_id, result FROM requests WHERE state = ? AND posted = 0"
            " AND lease_id IS NOT NULL AND result IS NOT NULL AND updated_at >= ?"
            " ORDER BY updated_at",
            (State.DONE, cutoff),
        )
        return [(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def finish(self, request_id: str, *, status: str, result: bytes) -> None:
        now = time.time()
        conn = self._conn()
        with self._writes:
            conn.execute(
                "INSERT INTO requests (id, state, status, result, received_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "state = excluded.state, status = excluded.status, result = excluded.result, "
                "updated_at = excluded.updated_at",
                (request_id, State.DONE, status, result, now, now),
            )

    def forget(self, request_id: str) -> None:
        """Drop a claim that did nothing (e.g. shutdown before work began) so a
        redelivery is processed normally."""
        conn = self._conn()
        with self._writes:
            conn.execute(
                "DELETE FROM requests WHERE id = ? AND state = ?", (request_id, State.RECEIVED)
            )

    def state(self, request_id: str) -> State | None:
        row = (
            self._conn()
            .execute("SELECT state FROM requests WHERE id = ?", (request_id,))
            .fetchone()
        )
        return State(row[0]) if row else None

    def recover(self) -> tuple[list[str], list[str]]:
        """At start-up, for the writes a crash interrupted: (in_doubt, to_relay).
        Those written without a relay permit become in_doubt here; those written under
        one are forgotten, and so are claims that never reached the write, so their
        redelivery is processed normally and the relay's permit decides (in_doubt
        unless the write marker proves the entry unchanged)."""
        conn = self._conn()
        with _immediate(conn):
            rows = conn.execute(
                "SELECT id, lease_id FROM requests WHERE state = ?", (State.WRITING,)
            ).fetchall()
            conn.execute(
                "UPDATE requests SET state = ?, updated_at = ? WHERE state = ?"
                " AND lease_id IS NULL",
                (State.IN_DOUBT, time.time(), State.WRITING),
            )
            conn.execute(
                "DELETE FROM requests WHERE state = ? OR (state = ? AND lease_id IS NOT NULL)",
                (State.RECEIVED, State.WRITING),
            )
        return [r[0] for r in rows if r[1] is None], [r[0] for r in rows if r[1] is not None]

    def prune(self, older_than_seconds: float) -> int:
        """Forget finished requests; their ids are long past expiry by then, so a
        replay is refused by the time window anyway."""
        cutoff = time.time() - older_than_seconds
        conn = self._conn()
        with self._writes:
            cur = conn.execute(
                "DELETE FROM requests WHERE updated_at < ? AND state IN (?, ?)",
                (cutoff, State.DONE, State.IN_DOUBT),
            )
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        rows = (
            self._conn().execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall()
        )
        return {str(state): int(n) for state, n in rows}

    def close(self) -> None:
        with self._sync_lock:
            if self._sync is not None:
                self._sync.shutdown(wait=True)
                self._sync = None
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
