"""Connectors per worker thread: ldap3 objects are not shared across threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.config import DirectoryConfig
from connectors.base import DirectoryConnector, DirectoryError, make_connector


class ConnectorPool:
    """One connector per (worker thread, directory): ldap3 objects are not shared
    across threads. Remembers every connector so shutdown can close them all."""

    def __init__(
        self, factory: Callable[[DirectoryConfig], DirectoryConnector] = make_connector
    ) -> None:
        self._factory = factory
        self._local = threading.local()
        self._all: list[DirectoryConnector] = []
        self._lock = threading.Lock()

    def get(self, directory: DirectoryConfig) -> DirectoryConnector:
        mine: dict[str, DirectoryConnector] | None = getattr(self._local, "conns", None)
        if mine is None:
            mine = self._local.conns = {}
        conn = mine.get(directory.name)
        if conn is None:
            conn = mine[directory.name] = self._factory(directory)
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except DirectoryError:
                pass  # closing after a fault: nothing left to release
