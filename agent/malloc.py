"""At most two glibc malloc arenas for the agent process (Linux only).

glibc gives threads their own arenas, up to 8 per core, and each keeps the memory
its threads freed. The agent runs a worker thread per request in flight (16 by
default) plus its dispatcher, poster and scheduler, so the idle agent's RSS grew with
the number of workers by memory nothing used any more. Two arenas (what
MALLOC_ARENA_MAX=2 sets, common for threaded Python services) keep the idle agent
under its 80 MB target; the workers spend their time waiting for the directory and
the relay, not contending for malloc. An operator's own MALLOC_ARENA_MAX wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_ARENA_MAX = -8  # glibc malloc.h


def limit_arenas(most: int = 2) -> bool:
    """Set glibc's arena limit; call before the threads start. False when not done
    (not Linux/glibc, or MALLOC_ARENA_MAX already set by the environment)."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, most))
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to do
        return False
