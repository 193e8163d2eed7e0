"""Live key rotation: the running agent picks up new key files without a restart.

`writeback-agent keys rotate` saves the rotated keys (previous key first, then the
new one) BEFORE it registers the new public key at the relay. So by the time any
portal can seal a request to the new key, the file is on disk. `ReloadingVerifier`
looks at the key files' identity (inode, size, mtime: one stat each, no read) at most
every `CHECK_INTERVAL` seconds, and at once whenever a request needs a key it does not
hold (signed by a portal key id it does not know or no longer trusts, or sealed to no
agent key it holds); it reloads when the files changed and verifies that request
again, so the first request sealed to the new key (or signed by a newly pinned portal
key) already finds it. A key removed from the files by hand stops being accepted
within CHECK_INTERVAL; SIGHUP reloads at once (e.g. after pinning or removing a
portal key in portal_keys.json by hand). Keys the agent changes itself (portal keys
from the relay, expired keys pruned: agent/jobs.py) reach the verifier directly.

A reload that fails (a half-written file, or a file others can now write) keeps the
keys in use and logs why; the agent never drops to no keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.enrollment import NotEnrolled, keyring_path, load_keyring
from agent.localfiles import UntrustedFile, check_trusted
from agent.logging import get_logger
from wire.errors import KeyFileError, Rejected
from wire.keys import KEM_FILE, KEM_PREVIOUS_FILE, AgentKeys
from wire.messages import OPS_WITH_SECRET
from wire.status import RejectReason
from wire.verify import RequestVerifier, VerifiedRequest

_log = get_logger(__name__)

Stamp = tuple[tuple[int, int, int], ...]

# Seconds between two looks at the key files while every request finds its keys.
CHECK_INTERVAL = 0.5
# Refusals that a key the files hold and the verifier does not yet may turn around.
_KEY_REASONS = frozenset({RejectReason.UNKNOWN_KEY, RejectReason.RETIRED_KEY})


class KeyWatcher:
    """Reloads agent keys and the portal keyring into a verifier when the files change."""

    def __init__(
        self,
        verifier: RequestVerifier,
        keys_dir: Path,
        data_dir: Path,
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verifier = verifier
        self._keys_dir = keys_dir
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._stamp = self._current_stamp()
        self._interval = interval
        self._clock = clock
        self._next_look = clock() + interval

    def _paths(self) -> list[Path]:
        return [
            self._keys_dir / KEM_FILE,
            self._keys_dir / KEM_PREVIOUS_FILE,
            keyring_path(self._data_dir),
        ]

    def _current_stamp(self) -> Stamp:
        stamps = []
        for path in self._paths():
            try:
                st = path.stat()
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append((0, 0, 0))
        return tuple(stamps)

    def maybe_reload(self, *, now: bool = False) -> bool:
        """Reload if a key file changed since the last look; True if keys were replaced.
        Looks at the files only every `interval` seconds unless `now`."""
        if not now and self._clock() < self._next_look:
            return False
        self._next_look = self._clock() + self._interval
        if self._current_stamp() == self._stamp:
            return False
        return self.reload(reason="key files changed")

    def reload(self, *, reason: str = "SIGHUP") -> bool:
        with self._lock:
            stamp = self._current_stamp()
            try:
                for path in (self._keys_dir, self._data_dir, keyring_path(self._data_dir)):
                    check_trusted(path)
                keys = AgentKeys.load(self._keys_dir)
                keyring = load_keyring(self._data_dir)
            except (KeyFileError, UntrustedFile, NotEnrolled, OSError, ValueError) as exc:
                _log.error("keys.reload_failed", reason=reason, detail=str(exc))
                return False
            old = self._verifier.agent_keys
            self._verifier.replace_keys(keys)
            self._verifier.replace_keyring(keyring)
            self._stamp = stamp
        _log.info(
            "keys.reloaded",
            reason=reason,
            kem_kid=keys.kem.kid,
            previous_kem_kid=keys.previous_kem.kid if keys.previous_kem else None,
            was=old.kem.kid,
            portal_kids=sorted(k.kid for k in keyring.keys),
        )
        return True


class ReloadingVerifier(RequestVerifier):
    """A RequestVerifier that picks up changed key files (see the module doc)."""

    watcher: KeyWatcher | None = None

    def verify(self, raw: bytes) -> VerifiedRequest:
        watcher = self.watcher
        if watcher is None:
            return super().verify(raw)
        watcher.maybe_reload()
        try:
            verified = super().verify(raw)
        except Rejected as exc:
            # Signed by a portal key we do not (yet) trust: look at the files now.
            if exc.reason in _KEY_REASONS and watcher.maybe_reload(now=True):
                return super().verify(raw)
            raise
        if self._sealed_to_none_of_ours(verified) and watcher.maybe_reload(now=True):
            return super().verify(raw)  # with the agent keys just loaded
        return verified

    def _sealed_to_none_of_ours(self, verified: VerifiedRequest) -> bool:
        """True when the request carries a secret sealed to no key this verifier holds
        (VerifiedRequest.open() would refuse it as not for this agent)."""
        if verified.header.op not in OPS_WITH_SECRET:
            return False
        usable = self.agent_keys.kem_keys(int(self._clock()))
        return not any(kid in usable for kid in verified.envelope.sealed)
