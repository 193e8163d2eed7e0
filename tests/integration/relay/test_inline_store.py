"""SQLite store calls run on the relay's event loop (deps.RelayContext._run): what a
user would notice if that went wrong, with a real relay process.

- Another process holding the database's write lock (an admin command, a second relay
  on the same file) must not freeze the relay: calls that need the lock wait for it
  on the store thread while everything else is answered; they complete, once, when
  the lock is given back.
- The event loop's connection never checkpoints; the store thread does, so the WAL
  file does not grow without end under steady writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.servers.relay import fake_envelope, start_relay


def test_a_held_write_lock_holds_up_only_the_calls_that_write(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        tenant, token = relay.create_tenant()
        agent = relay.enroll_agent(tenant)
        with agent.transport() as transport:
            assert transport.lease(wait=0) is None  # the agent is online now
        request_id = uuid.uuid4().hex
        other = sqlite3.connect(relay.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held by another process's connection
        submitted: list[str] = []
        failed: list[BaseException] = []

        def submit() -> None:
            try:
                with relay.portal(token) as portal:
                    submitted.append(portal.submit(fake_envelope(tenant, request_id=request_id)))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failed.append(exc)

        worker = threading.Thread(target=submit)
        worker.start()
        try:
            time.sleep(0.5)
            assert submitted == [] and failed == []  # waiting for the lock
            started = time.monotonic()
            for _ in range(5):  # the event loop is free meanwhile
                assert httpx.get(relay.base_url + "/healthz", timeout=2).status_code == 200
            with relay.portal(token) as portal:  # and so are reads
                assert portal.wait_results([request_id], timeout=0)[request_id].state == "unknown"
            assert time.monotonic() - started < 2.0
        finally:
            other.execute("ROLLBACK")
            other.close()
        worker.join(timeout=15)
        assert failed == []
        assert submitted == [request_id]
        with agent.transport() as transport:  # stored once, and served
            lease = transport.lease(wait=2)
            assert lease is not None and lease.request_id == request_id
            assert transport.lease(wait=0) is None
    finally:
        relay.stop()


def test_the_wal_is_checkpointed_while_the_relay_writes(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        tenant, token = relay.create_tenant()
        agent = relay.enroll_agent(tenant)
        wal = Path(str(relay.db_path) + "-wal")
        sizes = []
        with agent.transport() as transport, relay.portal(token) as portal:
            assert transport.lease(wait=0) is None
            for _ in range(4):
                for _ in range(50):
                    portal.submit(fake_envelope(tenant, padding=4000))
                sizes.append(wal.stat().st_size)
                time.sleep(1.5)  # the relay checkpoints once a second
        # Checkpointed, the WAL starts over from its beginning: it stays about one
        # batch long. Never checkpointed, it would hold all four batches.
        assert sizes[-1] < 2 * sizes[0], sizes
    finally:
        relay.stop()
