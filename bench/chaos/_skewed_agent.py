"""`writeback-agent` with its wall clock ahead by $WB_CHAOS_SKEW seconds: the chaos
run's skewed agent. What the agent reads as "now" (time.time and time.time_ns: the
request's iat/exp window, its signed relay calls, result and journal timestamps) runs
ahead; the kernel's clock and everyone else's stay right.

Why not libfaketime: with Debian's 0.9.10 every time.sleep of Python 3.11 fails with
EINVAL when the monotonic clock is left alone (FAKETIME_DONT_FAKE_MONOTONIC=1), and
the process hangs when it is faked too; the benchmark would measure libfaketime.

    WB_CHAOS_SKEW=2 python -m bench.chaos._skewed_agent -c agent.toml run
"""

from __future__ import annotations

import os
import sys
import time

_SKEW = float(os.environ.get("WB_CHAOS_SKEW", "0"))
_time, _time_ns = time.time, time.time_ns
# Before any agent module is imported: several bind time.time as a default argument.
time.time = lambda: _time() + _SKEW
time.time_ns = lambda: _time_ns() + int(_SKEW * 1e9)

from agent.cli import main  # noqa: E402 - must come after the clock is set

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
