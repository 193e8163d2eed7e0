"""Fixtures shared by the connector tests (the `directory` fixture, both directories,
is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import DirectoryConnector
from tests.servers.base import DirectoryEnv


@pytest.fixture
def connector(directory: DirectoryEnv) -> Iterator[DirectoryConnector]:
    """A fresh connector on the directory under test, closed afterwards."""
    conn = directory.connector()
    yield conn
    conn.close()
