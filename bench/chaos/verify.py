"""What a user would call a lie, counted per user from the portal's answers and the
directory itself (the bursts of one user are the only requests for that user).

- lost: a request with no final answer.
- written twice: the directory counts more password writes for a user than the
  answers account for (succeeded, in_doubt and lost ones may each have written once).
- lying: succeeded but the password is not live (and no newer request explains it),
  succeeded with no write in the directory, or refused/failed/superseded (any answer
  that says nothing was written, internal_error included) but its password is live or
  the directory counted a write for it. Writes are counted per user, not per request:
  an unexplained write in a burst that has such an answer is charged to that answer (a
  lie); without one, it is a double write.
- stale: an older request's password is live while a newer one was answered succeeded.
- in_doubt: counted, and checked against the writers that really died mid-write (the
  killed agent's journal said `writing`) or saw the directory fail mid-write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.chaos.directories import INITIAL_PASSWORD
from bench.chaos.load import Plan, Sent

SUCCEEDED = "succeeded"
# Answers that say the password WAS written (partially_applied: a companion change such
# as must-change was not, the password itself was).
WRITTEN = (SUCCEEDED, "partially_applied")
IN_DOUBT = "in_doubt"


@dataclass
class Verdict:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    written_twice: list[str] = field(default_factory=list)  # one entry per extra write
    lying: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    in_doubt: int = 0
    in_doubt_reasons: Counter[str] = field(default_factory=Counter)
    in_doubt_writer_died: int = 0
    in_doubt_directory_fault: int = 0
    in_doubt_unexplained: list[str] = field(default_factory=list)
    writes: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.written_twice or self.lying or self.stale)


def _live(burst: list[Sent], binds: Callable[[str, str], bool]) -> int | None:
    """Position of the burst's request whose password is live; -1 = the initial one;
    None = none of them (newest first: one bind in the normal case)."""
    for sent in reversed(burst):
        if binds(sent.user, sent.password):
            return sent.position
    return -1 if binds(burst[0].user, INITIAL_PASSWORD) else None


def _describe(sent: Sent) -> str:
    reason = f"/{sent.reason}" if sent.reason else ""
    return f"{sent.user}#{sent.position} {sent.request_id} {sent.status}{reason}"


def judge(
    plan: Plan,
    binds: Callable[[str, str], bool],
    write_counts: dict[str, int],
    died_mid_write: set[str],
    threads: int = 4,
) -> Verdict:
    verdict = Verdict()
    with ThreadPoolExecutor(threads) as pool:
        lives = list(pool.map(lambda burst: _live(burst, binds), plan.bursts))
    for burst, live in zip(plan.bursts, lives, strict=True):
        _judge_burst(verdict, burst, live, write_counts.get(burst[0].user, 0), died_mid_write)
    return verdict


def _judge_burst(
    verdict: Verdict, burst: list[Sent], live: int | None, writes: int, died: set[str]
) -> None:
    user = burst[0].user
    verdict.writes += writes
    for sent in burst:
        verdict.requests += 1
        verdict.statuses[sent.status or "LOST"] += 1
        if sent.status is None:
            verdict.lost.append(f"{_describe(sent)}: {sent.problem}")
        if sent.status == IN_DOUBT:
            verdict.in_doubt += 1
            verdict.in_doubt_reasons[sent.reason or "-"] += 1
            if sent.request_id in died:
                verdict.in_doubt_writer_died += 1
            elif sent.reason == "directory_fault":
                verdict.in_doubt_directory_fault += 1
            else:
                verdict.in_doubt_unexplained.append(_describe(sent))
    succeeded = [s for s in burst if s.status in WRITTEN]
    doubtful = [s for s in burst if s.status == IN_DOUBT or s.status is None]
    live_sent = burst[live] if live is not None and live >= 0 else None
    live_text = "the initial password" if live == -1 else (
        "no candidate password" if live is None else f"#{live}")

    # A definite "not written" answer whose password is live.
    refused_but_live = 0
    if live_sent is not None and live_sent.status not in (*WRITTEN, IN_DOUBT, None):
        refused_but_live = 1
        verdict.lying.append(f"{_describe(live_sent)}: refused/failed, but its password is live")

    if succeeded:
        newest = succeeded[-1]
        if live is not None and live < newest.position:
            if live >= 0:
                verdict.stale.append(f"{_describe(burst[live])} is live although "
                                     f"{_describe(newest)} is newer")
            else:
                verdict.lying.append(f"{_describe(newest)}: succeeded, but {live_text} is live")
        elif live is None:
            verdict.lying.append(f"{_describe(newest)}: succeeded, but {live_text} binds")
    elif live == -1 and writes > 0 and not doubtful:
        verdict.lying.append(f"{user}: {writes} write(s) but no answer says so")

    if writes < len(succeeded):
        verdict.lying.append(f"{user}: {len(succeeded)} succeeded answer(s), only {writes} "
                             "write(s) in the directory")
    extra = writes - len(succeeded) - len(doubtful) - refused_but_live
    said_not_written = [s for s in burst if s.status not in (*WRITTEN, IN_DOUBT, None)
                        and s is not live_sent]
    answers = ", ".join(_describe(s) for s in burst)
    for n in range(max(0, extra)):
        if n < len(said_not_written):
            verdict.lying.append(f"{_describe(said_not_written[n])}: says not written, but the "
                                 f"directory counted {writes} write(s) for {answers}")
        else:
            verdict.written_twice.append(f"{user}: {writes} write(s) for {answers}")


def report(verdict: Verdict, *, directory: str, faults: Counter[str], seconds: float) -> str:
    lines = [
        f"chaos on {directory}: {verdict.requests} requests in {seconds:.0f} s",
        "  faults: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())),
        "  answers: " + ", ".join(f"{k} {v}" for k, v in verdict.statuses.most_common()),
        f"  password writes seen by the directory: {verdict.writes}",
        f"  lost (no final answer): {len(verdict.lost)}",
        f"  written twice: {len(verdict.written_twice)}",
        f"  lying results: {len(verdict.lying)}",
        f"  stale overwrites: {len(verdict.stale)}",
        f"  in_doubt: {verdict.in_doubt} (writer killed mid-write {verdict.in_doubt_writer_died}, "
        f"directory failed mid-write {verdict.in_doubt_directory_fault}, "
        f"unexplained {len(verdict.in_doubt_unexplained)}); by reason: "
        + (", ".join(f"{k} {v}" for k, v in verdict.in_doubt_reasons.most_common()) or "-"),
    ]
    for title, items in (("lost", verdict.lost), ("written twice", verdict.written_twice),
                         ("lying", verdict.lying), ("stale", verdict.stale),
                         ("in_doubt unexplained", verdict.in_doubt_unexplained)):
        for item in items[:10]:
            lines.append(f"    {title}: {item}")
        if len(items) > 10:
            lines.append(f"    {title}: ... {len(items) - 10} more")
    lines.append("  verdict: " + ("FAIL" if verdict.failed else "ok"))
    return "\n".join(lines)
