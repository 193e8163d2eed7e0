"""The pytest face of tests/servers: session fixtures for the throwaway directories.

tests/servers is a library without pytest (the demo and bench/ use it too). Here a
`ServerUnavailable` (a missing binary, no root for Samba's loopback address) becomes a
skip on a developer's machine and a failure under CI=true, so CI cannot pass by
skipping.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import pytest

from tests.servers._process import ServerUnavailable, in_ci
from tests.servers.postgres import PostgresServer, require_psycopg, start_postgres
from tests.servers.samba import SambaEnv, running_samba, startup_timings
from tests.servers.slapd import SlapdEnv, running_slapd

T = TypeVar("T")


def skip_or_fail(message: str) -> None:
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def enter_server(stack: AbstractContextManager[T]) -> Iterator[T]:
    """Yield what a server's context manager gives; unavailable -> skip / CI failure."""
    try:
        env = stack.__enter__()
    except ServerUnavailable as exc:
        skip_or_fail(str(exc))
        raise  # unreachable: skip_or_fail raises
    try:
        yield env
    except BaseException as exc:
        if not stack.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        stack.__exit__(None, None, None)


@pytest.fixture(scope="session")
def slapd_env() -> Iterator[SlapdEnv]:
    started = time.monotonic()
    for env in enter_server(running_slapd()):
        if os.environ.get("WB_FIXTURE_TIMING"):
            print(f"\nslapd ready in {time.monotonic() - started:.2f}s")
        yield env


@pytest.fixture(scope="session")
def samba_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaEnv]:
    yield from enter_server(running_samba(tmp_path_factory.mktemp("samba")))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    started = time.monotonic()
    try:
        require_psycopg()
        server = start_postgres()
    except ServerUnavailable as exc:
        skip_or_fail(str(exc))
        raise
    if os.environ.get("WB_FIXTURE_TIMING"):
        print(f"\npostgres ready in {time.monotonic() - started:.2f}s")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    dsn = postgres_server.create_database()
    try:
        yield dsn
    finally:
        with contextlib.suppress(Exception):  # a still-open handle must not fail the test
            postgres_server.drop_database(dsn.rsplit("/", 1)[1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in startup_timings():
        terminalreporter.write_line(line)
