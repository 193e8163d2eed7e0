"""The parametrized `store` fixture: every RelayStore implementation runs the same
contract tests (test_store_contract.py), as APScheduler's jobstore tests do.

To add PostgreSQL: write `_postgres_store` (a throwaway database per test, e.g. from
tests/servers/), add it to STORES, and mark it so it skips locally / fails in CI
when the server is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.relay.store import RelayStore
from cloud.relay.store_sqlite import SQLiteStore


def _sqlite_store(tmp_path: Path) -> Iterator[Callable[[], RelayStore]]:
    """A factory, so a test can open a second handle on the same database (the way a
    second relay replica would) to check cross-process atomicity."""
    opened: list[SQLiteStore] = []

    def open_store() -> RelayStore:
        store = SQLiteStore(tmp_path / "relay.sqlite3")
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


STORES: dict[str, Callable[[Path], Iterator[Callable[[], RelayStore]]]] = {
    "sqlite": _sqlite_store,
}


@pytest.fixture(params=sorted(STORES))
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], RelayStore]]:
    yield from STORES[request.param](tmp_path)


@pytest.fixture
def store(store_factory: Callable[[], RelayStore]) -> RelayStore:
    return store_factory()
