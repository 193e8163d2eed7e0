"""The agent's periodic jobs, run by the scheduler (agent/scheduler.py): the signed
heartbeat to the relay, the directory health probe, journal pruning, portal key
refresh and the key-expiry watch (which also deletes a rotated-out private key once
its overlap window has passed). Also the relay/directory health state they and the
workers keep for /readyz and the metrics.

`PeriodicJobs` is a mixin of `AgentService` (agent/service.py): the jobs read and
update the service's state, declared below.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from agent import version
from agent.config import Settings
from agent.enrollment import keyring_path, portal_keys_from_relay
from agent.journal import Journal
from agent.outcome import Identity
from agent.transports.base import Transport, TransportError
from wire.keys import AgentKeys
from wire.messages import HeartbeatBody
from wire.results import sign_heartbeat
from wire.verify import RequestVerifier


class PeriodicJobs:
    """The scheduler's jobs over the service's state (set by AgentService.__init__)."""

    _settings: Settings
    _verifier: RequestVerifier | None
    _identity: Identity
    _keys: AgentKeys
    _journal: Journal
    _log: Any
    _metrics: Any | None
    _health: Any | None
    _in_flight: int
    _keyring_lock: threading.Lock
    _relay_ok: bool
    _directory_health: dict[str, bool]
    _control_transport: Transport | None

    # ------------------------------------------------------------------ periodic jobs

    def heartbeat(self) -> None:
        transport = self._control_transport
        if transport is None:
            return
        body = HeartbeatBody(
            v=1,
            type="heartbeat",
            agent_id=self._identity.agent_id,
            version=version(),
            sent_at=int(time.time()),
            directories={name: ok for name, ok in sorted(self._directory_health.items())},
            in_flight=self._in_flight,
        )
        try:
            transport.heartbeat(sign_heartbeat(body, self._keys))
            self._set_relay(True)
        except TransportError as exc:
            self._set_relay(False, str(exc))

    def probe_directories(self) -> None:
        """Connect and bind to each directory; logs directory.down/up on change."""
        from connectors.base import DirectoryError, make_connector

        for directory in self._settings.directories:
            connector = make_connector(directory)
            try:
                report = connector.check()
                ok, detail = (
                    report.ok,
                    "; ".join(f"{i.name}: {i.detail}" for i in report.items if not i.ok),
                )
            except DirectoryError as exc:
                ok, detail = False, exc.detail
            finally:
                with contextlib.suppress(DirectoryError):
                    connector.close()
            previous = self._directory_health.get(directory.name)
            self._directory_health[directory.name] = ok
            if previous is not ok:
                self._log.log(
                    20 if ok else 40,
                    "directory.up" if ok else "directory.down",
                    directory=directory.name,
                    detail=detail,
                )
            if self._metrics is not None:
                self._metrics.set_directory_up(directory.name, ok)
            if self._health is not None:
                self._health.set_directory(directory.name, ok)

    def prune_journal(self) -> None:
        removed = self._journal.prune(self._settings.schedule.journal_retention_days * 86400)
        if removed:
            self._log.info("journal.pruned", removed=removed)

    def refresh_portal_keys(self) -> None:
        """Pick up portal key rotation from the relay: new keys are added and changed
        windows (a retiring key's not_after) applied; keys are never dropped here."""
        if self._verifier is None or self._control_transport is None:
            return
        with self._keyring_lock:
            self._refresh_portal_keys(self._verifier, self._control_transport)

    def _refresh_portal_keys(self, verifier: RequestVerifier, transport: Transport) -> None:
        try:
            items = transport.portal_keys()
            fresh = portal_keys_from_relay(items)
        except (TransportError, KeyError, ValueError) as exc:
            self._log.warning("portal_keys.refresh_failed", detail=str(exc))
            return
        current = verifier.keyring
        merged = current
        for key in fresh:
            merged = merged.with_key(key)
        if {k.kid: k for k in merged.keys} != {k.kid: k for k in current.keys}:
            merged.save(keyring_path(self._settings.data_dir))
            verifier.replace_keyring(merged)
            self._log.info("portal_keys.updated", kids=sorted(k.kid for k in merged.keys))

    def check_key_expiry(self) -> None:
        """Warn ahead of a key's end, so nobody learns of it from rejected requests, and
        delete a rotated-out private key once its overlap window has passed."""
        self.refresh_portal_keys()
        now = time.time()
        self._prune_previous_key(now)
        warn = self._settings.schedule.key_expiry_warn_days * 86400
        windows: dict[str, int | None] = {}
        if self._verifier is not None:
            windows.update({f"portal:{k.kid}": k.not_after for k in self._verifier.keyring.keys})
        previous = self._keys.previous_kem
        if previous is not None:
            windows[f"agent:{previous.kid}"] = previous.not_after
        for name, not_after in windows.items():
            if not_after is None:
                continue
            remaining = not_after - now
            if self._metrics is not None:
                self._metrics.set_key_expiry(name, remaining)  # negative once expired
            if 0 < remaining <= warn:
                self._log.warning("key.expiring", key=name, seconds_left=int(remaining))

    def _prune_previous_key(self, now: float) -> None:
        """The previous HPKE key past its window leaves memory and the disk (one key
        file write at a time: the scheduler and a manual check can run this together)."""
        with self._keyring_lock:
            self._prune_previous_key_locked(now)

    def _prune_previous_key_locked(self, now: float) -> None:
        keys = self._verifier.agent_keys if self._verifier is not None else self._keys
        pruned = keys.pruned(int(now))
        if pruned is keys or keys.previous_kem is None:
            return
        pruned.save(self._settings.keys_dir)
        if self._verifier is not None:
            self._verifier.replace_keys(pruned)
        self._keys = pruned
        self._log.info("keys.pruned", kid=keys.previous_kem.kid)

    # ------------------------------------------------------------------ state

    def _set_relay(self, ok: bool, detail: str = "") -> None:
        if ok != self._relay_ok:
            if ok:
                self._log.info("relay.up")
            else:
                self._log.warning("relay.down", detail=detail)
        self._relay_ok = ok
        if self._metrics is not None:
            self._metrics.set_relay_up(ok)
        if self._health is not None:
            self._health.set_relay_ok(ok)
