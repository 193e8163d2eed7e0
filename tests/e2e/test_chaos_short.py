"""The short chaos run of bench/chaos in CI: the real relay, 3 `writeback-agent run`
processes in one group, the run's own slapd and the session's Samba AD DC, kill -9s,
cut result posts, a relay restart, slapd stopped for a few seconds and one agent's
clock 2 s ahead; then, from the directories themselves: no request lost, none written
twice, no lying answer, no older password live over a newer succeeded one.

The full run is `python -m bench.chaos` (README), with its own Samba that it stops
too; this one borrows the session's DC (never stopped) to stay near a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.__main__ import short_settings
from bench.chaos.run import run
from tests.servers._process import require_binary
from tests.servers.samba import SambaEnv


class ChaosFound(AssertionError):
    """The run found what a user would call a lie (the only expected failure here)."""


@pytest.mark.slapd
@pytest.mark.samba
@pytest.mark.timeout(280)
def test_short_chaos_run_loses_nothing_and_never_lies(tmp_path: Path, samba_env: SambaEnv) -> None:
    require_binary("slapd", "slapd")
    settings = short_settings(("slapd", "samba"), shared_samba=samba_env)
    settings.keep = tmp_path / "chaos"  # logs and journals stay with the failed test
    outcome = run(settings, log=lambda line: None)
    text = "\n".join(outcome.reports.values())

    # The run must really have run (or it could not fail): every request sent, every
    # kind of fault injected.
    assert not outcome.fault_errors, outcome.fault_errors
    for name, verdict in outcome.verdicts.items():
        assert verdict.requests == settings.requests[name], text
    faults = outcome.faults
    assert faults["agent kill -9"] >= 3, text
    assert faults["relay restart"] == 1, text
    assert faults["slapd stopped 4 s"] == 1, text
    assert faults["result post cut (lost)"] + faults["result post cut (unanswered)"] >= 1, text

    if outcome.failed:
        raise ChaosFound(text)
