"""The write-permit rules (docs/protocol.md section 12): the one decision the relay's
stores (SQLite, PostgreSQL) and the agent's in-memory test transport all make, so the
three cannot drift apart. Each backend reads the request's permit under its own lock,
answers three questions about the user's other requests, and records what the plan
says; the rules themselves live only here.

The decisions, for the request in hand under lease L, user key U:

- asked again under L (a lost answer, or the confirmation after RECHECK): GRANTED,
  the permit's time and marker refreshed.
- permitted before under another lease (a redelivery): IN_DOUBT, never written again,
  except that the permit is TAKEN OVER and the request decided as if first asked when
  the holder provably never wrote: it was only reserved (RECHECK, never confirmed), or
  the asker's write marker equals the holder's and the holder's time has run out.
  Until `late_answer_grace` after the holder's time the answer is BUSY instead of
  IN_DOUBT: the holder may have written and can still post its answer.
- first ask: SUPERSEDED when a newer ordered request for U was permitted; BUSY while
  another permit for U is open; RECHECK when another permit for U may have written
  after L began (its write could postdate the entry the agent read, so the marker it
  sent could be stale): the permit is reserved for L (exclusive, but not a licence to
  write) and the agent reads the entry again and asks again with the fresh marker;
  else GRANTED.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum

# Relay replicas each read their own clock; a write that closed this close to the
# lease's start is treated as possibly after it.
RECHECK_MARGIN = 2.0


class PermitDecision(StrEnum):
    """The relay's answer to "may I write to this user now?"."""

    GRANTED = "granted"  # write now
    IN_DOUBT = "in_doubt"  # permitted before under another lease: never write it again
    SUPERSEDED = "superseded"  # a newer request for this user was permitted
    BUSY = "busy"  # another request for this user holds an open permit: ask again
    RECHECK = "recheck"  # reserved for you: read the entry again, then ask again


class Record(Enum):
    """What the backend writes to the request's row after deciding."""

    NOTHING = "nothing"
    GRANT = "grant"  # permit_lease = L, reserved off, marker and time set
    RESERVE = "reserve"  # permit_lease = L, reserved on, time set
    CLOSE_IN_DOUBT = "close_in_doubt"  # permit_closed_at = close_at


@dataclass(frozen=True)
class HeldPermit:
    """What the request's row says of its permit, read under the backend's lock."""

    lease: str | None
    until: float | None
    closed_at: float | None
    marker: str | None
    reserved: bool


@dataclass(frozen=True)
class UserPermits:
    """The backend's answers about the user's other requests (asked lazily, in order)."""

    newer_permitted: Callable[[], bool]  # an ordered request with a higher seq holds a permit
    open_permit: Callable[[], bool]  # another permit for the user is open now
    wrote_since: Callable[[float], bool]  # another permit's last possible write >= t


@dataclass(frozen=True)
class PermitPlan:
    decision: PermitDecision
    record: Record
    close_at: float | None = None
    taken_over: bool = False


def holder_never_wrote(held: HeldPermit, lease_id: str, marker: str | None, now: float) -> bool:
    """A redelivery may take the permit over: its holder (another lease) was only
    reserved, or its marker equals ours and its time has run out."""
    if held.lease is None or held.lease == lease_id:
        return False
    if held.reserved:
        return True
    return (
        marker is not None
        and marker == held.marker
        and held.until is not None
        and float(held.until) <= now
    )


def plan_permit(
    held: HeldPermit,
    others: UserPermits,
    *,
    lease_id: str,
    leased_at: float | None,
    ordered: bool,
    marker: str | None,
    now: float,
    late_answer_grace: float = 0.0,
) -> PermitPlan:
    """The decision for the request in hand, and what to record for it."""
    if held.lease == lease_id:
        return PermitPlan(PermitDecision.GRANTED, Record.GRANT)
    taken_over = holder_never_wrote(held, lease_id, marker, now)
    if held.lease is not None and not taken_over:
        if late_answer_grace > 0 and now < float(held.until or 0) + late_answer_grace:
            return PermitPlan(PermitDecision.BUSY, Record.NOTHING)  # the holder may answer
        if held.closed_at is None:
            # The outcome is now recorded as in doubt; the permit still excludes other
            # writes to this user until its holder's time has run out.
            close_at = max(now, float(held.until or now))
            return PermitPlan(PermitDecision.IN_DOUBT, Record.CLOSE_IN_DOUBT, close_at)
        return PermitPlan(PermitDecision.IN_DOUBT, Record.NOTHING)
    if ordered and others.newer_permitted():
        return PermitPlan(PermitDecision.SUPERSEDED, Record.NOTHING)
    if others.open_permit():
        return PermitPlan(PermitDecision.BUSY, Record.NOTHING)
    if leased_at is not None and others.wrote_since(leased_at - RECHECK_MARGIN):
        return PermitPlan(PermitDecision.RECHECK, Record.RESERVE, taken_over=taken_over)
    return PermitPlan(PermitDecision.GRANTED, Record.GRANT, taken_over=taken_over)
