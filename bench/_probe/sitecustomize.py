"""Loaded by a relay started with bench/_probe on PYTHONPATH (bench_relay_memory.py):
on SIGUSR1 (with --tracemalloc) write a tracemalloc snapshot to $WB_PROBE_DIR/<n>.snap;
on SIGUSR2 write what SQLite and glibc malloc hold to $WB_PROBE_DIR/mem-<n>.json.
Not part of the relay; only the memory bench puts it on the path."""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import os
import signal
import threading
import tracemalloc
from pathlib import Path
from types import FrameType

_snaps = itertools.count()
_mems = itertools.count()


def _dump(_sig: int, _frame: FrameType | None) -> None:
    gc.collect()
    path = Path(os.environ["WB_PROBE_DIR"]) / f"{next(_snaps)}.snap"
    tmp = path.with_suffix(".tmp")
    tracemalloc.take_snapshot().dump(str(tmp))
    tmp.rename(path)


if os.environ.get("WB_PROBE_DIR") and tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR1, _dump)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


def _memory(_sig: int, _frame: FrameType | None) -> None:
    """On SIGUSR2: what SQLite and the C allocator hold, as JSON in $WB_PROBE_DIR."""
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    report = {
        "sqlite_used": lib.sqlite3_memory_used(),
        "sqlite_highwater": lib.sqlite3_memory_highwater(0),
        "malloc_arena": info.arena,  # main arena's sbrk heap only
        "malloc_mmapped": info.hblkhd,
        "malloc_in_use": info.uordblks,
        "malloc_free": info.fordblks,
        "threads": threading.active_count(),
    }
    out = Path(os.environ["WB_PROBE_DIR"]) / f"mem-{next(_mems)}.json"
    out.with_suffix(".tmp").write_text(json.dumps(report))
    out.with_suffix(".tmp").rename(out)


if os.environ.get("WB_PROBE_DIR"):
    signal.signal(signal.SIGUSR2, _memory)
