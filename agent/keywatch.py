"""Live key rotation: the running agent picks up new key files without a restart.

`writeback-agent keys rotate` saves the rotated keys (previous key first, then the
new one) BEFORE it registers the new public key at the relay. So by the time any
portal can seal a request to the new key, the file is on disk; `ReloadingVerifier`
looks at the key files' identity (inode, size, mtime: one stat each, no read) before
every request and reloads when they changed, so the first request sealed to the new
key already finds it. SIGHUP forces a reload (e.g. after pinning a portal key in
portal_keys.json by hand).

A reload that fails (a half-written file, or a file others can now write) keeps the
keys in use and logs why; the agent never drops to no keys.
"""

from __future__ import annotations

import threading
from pathlib import Path

from agent.enrollment import NotEnrolled, keyring_path, load_keyring
from agent.localfiles import UntrustedFile, check_trusted
from agent.logging import get_logger
from wire.errors import KeyFileError
from wire.keys import KEM_FILE, KEM_PREVIOUS_FILE, AgentKeys
from wire.verify import RequestVerifier, VerifiedRequest

_log = get_logger(__name__)

Stamp = tuple[tuple[int, int, int], ...]


class KeyWatcher:
    """Reloads agent keys and the portal keyring into a verifier when the files change."""

    def __init__(self, verifier: RequestVerifier, keys_dir: Path, data_dir: Path) -> None:
        self._verifier = verifier
        self._keys_dir = keys_dir
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._stamp = self._current_stamp()

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

    def maybe_reload(self) -> bool:
        """Reload if a key file changed since the last look; True if keys were replaced."""
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
    """A RequestVerifier that checks its key files before each request (see module doc)."""

    watcher: KeyWatcher | None = None

    def verify(self, raw: bytes) -> VerifiedRequest:
        if self.watcher is not None:
            self.watcher.maybe_reload()
        return super().verify(raw)
