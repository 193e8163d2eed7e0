"""python -m bench.chaos [--directory slapd|samba|both] [--short] [--keep DIR]

Starts the real system on loopback (relay on SQLite, 3 `writeback-agent run`
processes in one group with 2 workers each, a throwaway slapd and Samba AD DC),
drives it from portal threads through cloud/sdk.py while injecting faults, then
prints per directory: requests, faults, lost, written twice, lying, stale and in_doubt.
Exit status 1 if any request was lost, written twice, answered with a lie or left an
older password live; 0 otherwise. Needs root for Samba (a loopback address, port 636).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from bench.chaos.faults import FaultPlan
from bench.chaos.run import Settings, run

SHORT_REQUESTS = {"slapd": 80, "samba": 20}
SHORT_FAULTS = FaultPlan(kill_every=(2.0, 4.0), restart_after=1.0, relay_restart_at=0.3,
                         directory_down_at=(0.45, 0.6), directory_down=4.0)


def short_settings(directories: tuple[str, ...], **overrides: object) -> Settings:
    """The CI-sized run: every kind of fault, about a hundred requests, about a minute;
    mostly bursts of two or three resets for one user submitted at once, so that a
    missing per-user order shows up in a short run too."""
    settings = Settings(directories=directories, requests=dict(SHORT_REQUESTS),
                        faults=SHORT_FAULTS, cut_probability=0.1, lease_timeout=3.0,
                        portal_threads=12, burst_sizes=(10, 45, 45), together=0.8,
                        max_load_seconds=90)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--directory", choices=["slapd", "samba", "both"], default="both")
    parser.add_argument("--short", action="store_true", help="the CI-sized run")
    parser.add_argument("--slapd-requests", type=int)
    parser.add_argument("--samba-requests", type=int)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="keep logs, journals and databases here")
    args = parser.parse_args(argv)
    directories = ("slapd", "samba") if args.directory == "both" else (args.directory,)
    settings = short_settings(directories) if args.short else Settings(directories=directories)
    settings.seed, settings.keep = args.seed, args.keep
    for name in ("slapd", "samba"):
        count = getattr(args, f"{name}_requests")
        if count is not None:
            settings.requests[name] = count
    # SIGTERM unwinds like Ctrl+C, so every process the run started is stopped.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    outcome = run(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    for text in outcome.reports.values():
        print(text)
    for error in outcome.fault_errors:
        print(f"fault injection error: {error}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
