"""Every operator event the agent logs: name, level(s) and meaning, in one place.

Operators write alert rules against these names, so they are a contract like the
statuses. This table is the one source: docs/errors.md ("Operator events") is
generated from it (`python -m agent.events`), and tests/unit/agent/test_events.py
reads the code and fails when an event is logged that is not here, at a level not
listed here, or listed here and logged nowhere.

The per-request audit lines (`request.succeeded`, `request.failed`,
`request.rejected`) also carry the numeric `event_id` of their status
(wire.status.EVENT_IDS, the first table of docs/errors.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    name: str
    levels: tuple[str, ...]  # the usual level first
    meaning: str


EVENTS: tuple[Event, ...] = (
    # lifecycle
    Event("agent.started", ("info",),
          "the service is running (`agent_id`, `version`, `directories`)"),
    Event("agent.stopping", ("info",), "SIGTERM or stop: finishing the requests in hand"),
    Event("agent.stopped", ("info",), "every worker has finished"),
    Event("files.restricted", ("warning",),
          "at start: the data directory or a file in it was more open than 0700/0600 and "
          "was tightened (`paths`)"),
    Event("relay.url_changed", ("warning",),
          "at start: `[relay] url` differs from the URL the agent enrolled at; the "
          "configured one is used"),
    Event("systemd.notify_failed", ("warning",),
          "a message to systemd's NOTIFY_SOCKET could not be sent"),
    Event("health.listening", ("info",), "the health endpoint is bound (`host`, `port`)"),
    Event("health.http", ("debug",), "one health request (`client`, `request`, `http_status`)"),
    Event("health.error", ("warning",), "the health endpoint failed to answer one client"),
    # one request
    Event("request.received", ("debug",),
          "a leased request passed verification (debug; at info a request logs one line, "
          "its audit line below, whose `duration_ms` counts from the lease)"),
    Event("request.writing", ("debug",),
          "the directory write starts (debug; bench/trace_one.py times the write from it)"),
    Event("request.succeeded", ("info",), "audit line: the request was carried out"),
    Event("request.failed", ("info", "warning"),
          "audit line: any other answer (`status`, `reason`; info for not_managed)"),
    Event("request.rejected", ("warning",),
          "audit line: the envelope failed verification; nothing was decrypted"),
    Event("request.replayed", ("info",),
          "a request id seen before: the stored result was sent again, nothing written"),
    Event("request.duplicate_in_flight", ("info",),
          "another worker of this agent holds the same request id; this copy is dropped"),
    Event("request.lease_lost", ("warning",),
          "the lease was lost before the write permit was granted; nothing was written"),
    Event("request.given_back", ("warning",),
          "no write permit in time (another write to the same user still open, or the "
          "relay unreachable); nothing was written and the request went back to the queue"),
    Event("request.in_doubt", ("warning",),
          "at start-up: a write the previous process was killed during, made without a "
          "relay permit"),
    Event("request.interrupted", ("warning",),
          "at start-up: a write the previous process was killed during, under a relay "
          "permit; its redelivery asks the relay, which answers in_doubt unless the "
          "entry provably did not change (then it is written once, normally)"),
    Event("request.crashed", ("error",),
          "an unexpected error in the pipeline (traceback follows, secrets scrubbed); the "
          "request is still answered (internal_error, or in_doubt once the write may have "
          "gone out)"),
    Event("request.unanswerable", ("error",),
          "not even an internal_error answer could be signed for a request (traceback "
          "follows); the lease runs out and the request is redelivered"),
    Event("journal.write_failed", ("error",),
          "the journal could not record an answer; the answer still goes out and a restart "
          "reports that request in_doubt"),
    Event("journal.pruned", ("info",), "old journal rows were deleted (`removed`)"),
    Event("lease.released", ("info",), "a leased request was given back to the queue unanswered"),
    Event("lease.release_failed", ("warning",),
          "giving a lease back failed; it runs out by itself and the request is redelivered"),
    Event("result.not_posted", ("warning", "info", "error"),
          "the relay could not take a result (info: the lease was lost, another agent "
          "answers; error: given up); the journal keeps it for a redelivery"),
    Event("lease.dispatcher_failed", ("error",),
          "a bug in the lease dispatcher (relay.lease_batch > 1; traceback follows); it "
          "retries with backoff, and what it leased in that call runs out and is "
          "redelivered"),
    Event("result.poster_failed", ("error",),
          "a bug in the result poster (traceback follows); the results of that batch are "
          "not acknowledged, the journal keeps them and a restart posts them again"),
    Event("result.reposted", ("info",),
          "at start: an answer written before a crash, never acknowledged by the relay, "
          "is posted again (the relay takes the permit holder's answer until another "
          "is stored)"),
    # directories and relay
    Event("directory.down", ("error",),
          "the periodic probe (the `check` items below) failed (`directory`, `detail`)"),
    Event("directory.up", ("info",), "the probe succeeds again"),
    Event("relay.down", ("warning",),
          "the relay could not be reached (the agent retries with backoff)"),
    Event("relay.up", ("info",), "the relay answers again"),
    # keys and jobs
    Event("key.expiring", ("warning",),
          "a portal key or the agent's previous key ends within `key_expiry_warn_days`"),
    Event("keys.reloaded", ("info",),
          "the agent's key files or portal_keys.json changed (a `keys rotate`, SIGHUP) and "
          "were loaded (`reason`, `kem_kid`)"),
    Event("keys.reload_failed", ("error",),
          "changed key files could not be used (half-written, or writable by others); the "
          "keys in use are kept"),
    Event("keys.pruned", ("info",),
          "a rotated-out encryption key passed its overlap window and was deleted (`kid`)"),
    Event("portal_keys.updated", ("info",), "new portal keys from the relay were pinned (`kids`)"),
    Event("portal_keys.refresh_failed", ("warning",),
          "the portal keys could not be fetched; the pinned ones stay in use"),
    Event("job.failed", ("error",), "a periodic job raised; the scheduler goes on"),
)

BY_NAME: dict[str, Event] = {event.name: event for event in EVENTS}


def markdown_table() -> str:
    """The "Operator events" table of docs/errors.md."""
    rows = ["| event | level | meaning |", "|---|---|---|"]
    rows += [f"| {e.name} | {' / '.join(e.levels)} | {e.meaning} |" for e in EVENTS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
