"""The fence before a write: ask the relay for the write permit for the user in hand,
and turn its answer into the write's deadline or the request's answer.

The ask carries the user key (agent/permits.py `user_key`) and the write marker (the
server the user was read from and the entry's change stamp there). When the relay
answers RECHECK, another write to the same user may have landed after our read, so
the marker we sent may describe an entry that no longer exists; the relay has
reserved the permit for us (no other write to the user can start), and we read the
user again and ask again with the fresh marker, which the relay grants. The rules are
in wire/permits.py; why they keep results honest: docs/operations.md, "High
availability".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.outcome import Outcome
from agent.permits import GiveBack, PermitGate, user_key, write_marker
from connectors.base import DirectoryUser
from wire.messages import RequestHeader
from wire.permits import PermitDecision
from wire.status import Status

_ORDERED_OPS = frozenset({"reset", "change"})


def ask_to_write(
    permits: PermitGate,
    header: RequestHeader,
    user: DirectoryUser,
    directory: str,
    deadline: float,
    *,
    reread: Callable[[], DirectoryUser],
) -> tuple[DirectoryUser, Outcome | float]:
    """The user to write (read again after RECHECK) and either the time the permit's
    lease ends (by our clock) or the answer when the write is refused. Raises
    LeaseLost or GiveBack (the lease is then given back and the request redelivered)."""
    permit = _ask(permits, header, user, deadline)
    if permit is PermitDecision.RECHECK:
        fresh = reread()
        if (fresh.id, fresh.dn, fresh.disabled) != (user.id, user.dn, user.disabled):
            # Not the entry we checked any more: the redelivery decides afresh.
            raise GiveBack("the user's entry changed while the permit was asked")
        user = fresh
        permit = _ask(permits, header, user, deadline)
        if permit is PermitDecision.RECHECK:
            raise GiveBack("the relay asked to read the user again twice")
    if permit is PermitDecision.IN_DOUBT:
        return user, Outcome(
            Status.IN_DOUBT,
            "redelivered",
            "a write for this request was permitted before (another agent or an earlier "
            "lease) and its outcome is unknown; it is not written again",
            directory=directory,
        )
    if permit is PermitDecision.SUPERSEDED:
        return user, Outcome(
            Status.SUPERSEDED,
            None,
            f"a newer request for {user.dn} was permitted first; this one is not written",
            directory=directory,
        )
    if isinstance(permit, PermitDecision):  # BUSY is waited out by the gate
        raise GiveBack(f"unexpected permit answer {permit.value}")
    return user, permit


def _ask(
    permits: PermitGate, header: RequestHeader, user: DirectoryUser, deadline: float
) -> PermitDecision | float:
    immutable = user.id or f"dn:{user.dn}"  # every directory we support has an id
    key = user_key(header.tenant, immutable)
    permit = permits.ask(
        key,
        ordered=header.op in _ORDERED_OPS,
        deadline=deadline,
        marker=write_marker(key, user.server, user.change_stamp),
    )
    if permit.decision is PermitDecision.GRANTED:
        return time.time() + permit.valid_for
    return permit.decision
