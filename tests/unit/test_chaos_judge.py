"""The chaos benchmark's judge (bench/chaos/verify.py) and its two directory counters:
each kind of lie it must report, shown on a hand-made burst, so the benchmark cannot
pass by failing to look."""

from __future__ import annotations

import struct
from pathlib import Path

from bench.chaos.directories import INITIAL_PASSWORD, count_passmods, unicode_pwd_version
from bench.chaos.load import Plan, Sent, make_plan
from bench.chaos.verify import Verdict, judge


def _burst(*answers: tuple[str | None, str | None]) -> list[Sent]:
    return [Sent("u1", "SL\\u1", 0, i, f"Pw-{i}-xyzXYZ", must_change=False,
                 request_id=f"r{i}", status=status, reason=reason)
            for i, (status, reason) in enumerate(answers)]


def _judge(
    burst: list[Sent], live: str, writes: int, died: frozenset[str] = frozenset()
) -> Verdict:
    return judge(Plan([burst]), lambda _user, password: password == live, {"u1": writes},
                 set(died), threads=1)


def test_two_succeeded_resets_with_the_newer_live_are_fine() -> None:
    burst = _burst(("succeeded", None), ("succeeded", None))
    verdict = _judge(burst, burst[1].password, writes=2)
    assert not verdict.failed
    assert verdict.statuses["succeeded"] == 2


def test_older_password_live_over_a_newer_success_is_stale() -> None:
    burst = _burst(("succeeded", None), ("succeeded", None))
    verdict = _judge(burst, burst[0].password, writes=2)
    assert len(verdict.stale) == 1 and not verdict.lying


def test_a_request_without_an_answer_is_lost() -> None:
    burst = _burst((None, None))
    burst[0].problem = "no answer before the request expired"
    verdict = _judge(burst, INITIAL_PASSWORD, writes=0)
    assert len(verdict.lost) == 1


def test_one_more_write_than_answers_is_a_double_write() -> None:
    burst = _burst(("succeeded", None))
    verdict = _judge(burst, burst[0].password, writes=2)
    assert len(verdict.written_twice) == 1 and not verdict.lying


def test_partially_applied_says_the_password_was_set() -> None:
    burst = _burst(("partially_applied", None))
    assert not _judge(burst, burst[0].password, writes=1).failed  # set, as it says
    assert _judge(burst, INITIAL_PASSWORD, writes=0).lying  # said set, but was not


def test_refused_but_live_is_a_lie() -> None:
    burst = _burst(("policy_violation", "history"))
    verdict = _judge(burst, burst[0].password, writes=1)
    assert len(verdict.lying) == 1 and not verdict.written_twice


def test_an_unexplained_write_is_charged_to_an_answer_that_said_not_written() -> None:
    # issue 8 finding 4: internal_error although the password was set (then overwritten)
    burst = _burst(("internal_error", None), ("succeeded", None))
    verdict = _judge(burst, burst[1].password, writes=2)
    assert len(verdict.lying) == 1 and "internal_error" in verdict.lying[0]
    assert not verdict.written_twice


def test_succeeded_but_the_password_does_not_bind_is_a_lie() -> None:
    burst = _burst(("succeeded", None))
    assert len(_judge(burst, INITIAL_PASSWORD, writes=1).lying) == 1
    assert len(_judge(burst, "something else", writes=1).lying) == 1


def test_succeeded_without_a_write_in_the_directory_is_a_lie() -> None:
    burst = _burst(("succeeded", None))
    assert len(_judge(burst, burst[0].password, writes=0).lying) == 1


def test_in_doubt_is_checked_against_the_writers_that_died() -> None:
    burst = _burst(("in_doubt", "interrupted"), ("in_doubt", "superseded"))
    verdict = _judge(burst, burst[0].password, writes=1, died=frozenset({"r0"}))
    assert not verdict.failed
    assert verdict.in_doubt == 2 and verdict.in_doubt_writer_died == 1
    assert len(verdict.in_doubt_unexplained) == 1


def test_slapd_stats_log_counts_successful_password_modifies_across_restarts() -> None:
    log = "\n".join([
        'x conn=1001 op=4 PASSMOD id="uid=a,ou=people,dc=wb,dc=test" new',
        "x conn=1001 op=4 RESULT oid= err=0 qtime=0.000022 etime=0.000613 text=",
        'x conn=1002 op=2 PASSMOD id="uid=a,ou=people,dc=wb,dc=test" new',
        "x conn=1002 op=2 RESULT oid= err=19 qtime=0.000022 etime=0.000613 text=",
        "x slapd stopped.",  # connection numbers start again at 1001
        'x conn=1001 op=4 PASSMOD id="UID=a,ou=people,dc=wb,dc=test" new',
        "x conn=1001 op=4 RESULT oid= err=0 qtime=0.000022 etime=0.000613 text=",
    ])
    assert count_passmods(log) == {"uid=a,ou=people,dc=wb,dc=test": 2}


def test_unicode_pwd_version_is_read_from_the_replication_metadata_blob() -> None:
    def entry(attid: int, version: int) -> bytes:
        return struct.pack("<IIQ16sqq", attid, version, 0, b"\0" * 16, 1, 1)

    blob = struct.pack("<IIII", 1, 0, 2, 0) + entry(0x90001, 7) + entry(0x9005A, 3)
    assert unicode_pwd_version(blob) == 3
    assert unicode_pwd_version(struct.pack("<IIII", 1, 0, 0, 0)) is None


def test_plans_have_bursts_with_later_requests_and_unique_passwords() -> None:
    plan = make_plan("cx", "SL", 200, seed=3)
    assert len(plan.requests) == 200
    assert {len(b) for b in plan.bursts} == {1, 2, 3}
    assert len({s.password for s in plan.requests}) == 200
    assert all(s.route == f"SL\\{s.user}" for s in plan.requests)


def test_explain_sorts_redelivered_in_doubt_by_what_the_permit_holder_did(tmp_path: Path) -> None:
    # bench/chaos/explain.py on a hand-made kept run: three requests answered
    # in_doubt/redelivered by agent1; agent0 held each permit and wrote-and-answered
    # one, was mid-write on one, and has no journal row for the third.
    import json
    import sqlite3

    from bench.chaos.explain import explain

    system = tmp_path / "system"
    (system / "relay").mkdir(parents=True)
    with sqlite3.connect(system / "relay" / "relay.sqlite3") as conn:
        conn.execute("CREATE TABLE requests (request_id TEXT, permit_agent TEXT)")
        conn.executemany("INSERT INTO requests VALUES (?, 'agt_0')",
                         [("r-done",), ("r-writing",), ("r-none",)])
    for n, rows in ((0, [("r-done", "done", "succeeded"), ("r-writing", "writing", None)]),
                    (1, [])):
        agent = system / f"agent{n}"
        (agent / "data").mkdir(parents=True)
        with sqlite3.connect(agent / "data" / "journal.sqlite3") as conn:
            conn.execute("CREATE TABLE requests (id TEXT, state TEXT, status TEXT)")
            conn.executemany("INSERT INTO requests VALUES (?, ?, ?)", rows)
        lines = [{"timestamp": "2026-11-30T12:00:00.000000Z", "event": "agent.started",
                  "agent_id": f"agt_{n}"}]
        if n == 1:
            lines += [{"timestamp": f"2026-11-30T12:00:0{i}.000000Z", "event": "request.failed",
                       "request_id": rid, "status": "in_doubt", "reason": "redelivered"}
                      for i, rid in enumerate(("r-done", "r-writing", "r-none"), 1)]
        (agent / "agent.log").write_text("".join(json.dumps(x) + "\n" for x in lines))
    counts, explained = explain(tmp_path)
    kinds = {rid: kind for rid, _holder, kind, _events in explained}
    assert "answered succeeded" in kinds["r-done"]
    assert "died mid-write" in kinds["r-writing"]
    assert "wrote nothing" in kinds["r-none"]
    assert sum(counts.values()) == 3
