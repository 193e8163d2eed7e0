"""The directories' backlogs: how many of this agent's writes are at each directory
now, and how fast it finishes them. While `depth` or more are queued at a directory
(it is busy), that directory, not the agent, sets the pace, and three things can wait
a little at no cost to throughput:

- a finished result of that directory waits for the next ones to share its call
  (agent/poster.py);
- a write permit for that directory waits for other workers' permits (agent/
  permit_batch.py): its write would only queue behind the others;
- while every configured directory is busy, the lease dispatcher gathers idle
  workers and leases for all of them in one call (agent/idle_workers.py): a request
  leased now would only queue too.

Each waits at most `hold` seconds: `depth` writes' time at the directory's recent pace
(a moving average of the time between one write's end and the next's, or of a
write's own time when it was alone), and never more than `most_hold`; and no longer
than the directory stays busy. Nothing waits while fewer than `depth` writes are
queued: a request alone, or a few at a time, never waits.

Why: a directory that takes tens of milliseconds per write (Active Directory) finishes
its writes one at a time, so without this every answer, and every request the
portal sends after it, travelled alone (about 4 HTTP calls per reset at 16 requests
outstanding on Samba AD). In a portal that sends the next request when an answer
comes back, the hold costs nothing: the writes still queued keep the directory busy,
so resets per second, and with them the time a reset takes, stay the same. When
requests arrive independently of the answers, an answer may reach its user up to
`hold` later while its directory is that busy (docs/operations.md, "Holding calls
while the directory is busy"); `relay.hold_depth = 0` turns it off.

The pipeline tells which directory a worker thread is working for (`routed`), so the
poster and the permit batcher, called from that thread, know which backlog to ask.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# The first writes' pace before any is measured, and how fast the average follows.
_FIRST_WRITE = 0.02
_WEIGHT = 0.2


def wait_while(cond: threading.Condition, until: float, still: Callable[[], bool]) -> bool:
    """With `cond`'s lock held: wait on it while `still()`, until `until` (monotonic);
    whether it waited at all. How each batcher waits for company."""
    waited = False
    while still():
        left = until - time.monotonic()
        if left <= 0:
            break
        cond.wait(left)
        waited = True
    return waited


@dataclass
class _Directory:
    writing: int = 0
    pace: float = _FIRST_WRITE  # seconds per write, as the directory finishes them
    last_end: float = 0.0


class DirectoryBacklog:
    def __init__(
        self, depth: int = 4, *, most_hold: float = 0.5, directories: Iterable[str] = ()
    ) -> None:
        self._depth = depth  # 0: never busy
        self._most_hold = most_hold
        self._lock = threading.Lock()
        self._dirs = {name: _Directory() for name in directories}
        self._listeners: list[threading.Condition] = []
        self._current = threading.local()

    def listen(self, cond: threading.Condition) -> None:
        """Notify everyone waiting on `cond` whenever a write ends (a busy directory
        may not be busy any more); nobody is, while holds are off (depth 0)."""
        self._listeners.append(cond)

    # ------------------------------------------------------------------ the pipeline

    def routed(self, directory: str | None) -> None:
        """This thread now works for `directory` (None: for none)."""
        self._current.directory = directory

    def current(self) -> str | None:
        return getattr(self._current, "directory", None)

    def write_started(self, directory: str) -> tuple[str, float]:
        with self._lock:
            self._dirs.setdefault(directory, _Directory()).writing += 1
        return directory, time.monotonic()

    def write_ended(self, started: tuple[str, float]) -> None:
        name, at = started
        now = time.monotonic()
        with self._lock:
            d = self._dirs[name]
            d.writing -= 1
            # Queued behind the previous write, this one took the time since it ended.
            took = now - max(at, d.last_end)
            d.last_end = now
            d.pace += _WEIGHT * (took - d.pace)
        if self._depth > 0:  # else nobody ever waits for a busy directory
            for cond in self._listeners:
                with cond:
                    cond.notify_all()

    # ------------------------------------------------------------------ who waits

    def busy(self, directory: str | None) -> bool:
        """`depth` writes or more queued at `directory` (never for None)."""
        d = self._dirs.get(directory) if directory is not None else None
        return d is not None and self._depth > 0 and d.writing >= self._depth

    def busy_everywhere(self) -> bool:
        """Every directory busy: a request leased now, wherever it goes, would queue."""
        return bool(self._dirs) and all(self.busy(name) for name in list(self._dirs))

    def writing(self, directory: str) -> int:
        d = self._dirs.get(directory)
        return d.writing if d is not None else 0

    def hold(self, directory: str | None = None) -> float:
        """The longest a result or a permit of `directory` (a lease: None) may wait
        for company while busy."""
        if directory is None:
            paces = [d.pace for d in list(self._dirs.values())] or [_FIRST_WRITE]
            pace = min(paces)
        else:
            d = self._dirs.get(directory)
            pace = d.pace if d is not None else _FIRST_WRITE
        return min(self._most_hold, self._depth * pace)
