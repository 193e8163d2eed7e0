"""The parametrized `store` fixture: every RelayStore implementation runs the same
contract tests (test_store_contract.py), as APScheduler's jobstore tests do.

PostgreSQL runs against the session's throwaway cluster (tests/servers/postgres.py),
a fresh database per test; it skips locally / fails under CI=true when PostgreSQL or
psycopg is missing. `-m "not postgres"` runs the SQLite half only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.relay.store import RelayStore
from cloud.relay.store_sqlite import SQLiteStore

Factory = Callable[[], RelayStore]


def _sqlite_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
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


def _postgres_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    dsn: str = request.getfixturevalue("postgres_dsn")
    from cloud.relay.store_postgres import PostgresStore

    opened: list[PostgresStore] = []

    def open_store() -> RelayStore:
        store = PostgresStore(dsn, max_connections=4)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


STORES: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[Factory]]] = {
    "sqlite": _sqlite_store,
    "postgres": _postgres_store,
}
_MARKS = {"postgres": [pytest.mark.postgres]}


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, [])) for name in sorted(STORES)])
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], RelayStore]]:
    yield from STORES[request.param](request, tmp_path)


@pytest.fixture
def store(store_factory: Callable[[], RelayStore]) -> RelayStore:
    return store_factory()
