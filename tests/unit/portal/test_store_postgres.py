"""What only the portal's PostgreSQL store has: codes checked from several threads at
once, a database shared with the relay, migrations, the settings that select it, no
password in what it shows, and a clear message when psycopg is missing.

The behaviour it shares with SQLite is in test_portal_units.py (the `store` fixture
runs those tests on both)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cloud.portal.settings import load_settings
from cloud.portal.store import DatabaseUnavailable, SqliteStore, open_store
from tests.servers.postgres import PostgresServer

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[3]
R = TypeVar("R")


def _together(calls: list[Callable[[], R]]) -> list[R]:
    """Run each call in its own thread, all released at the same instant; their results."""
    barrier = threading.Barrier(len(calls))
    results: list[R] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], R]) -> None:
        try:
            barrier.wait(timeout=30)
            result = call()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == len(calls)
    return results


def _tables(dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {str(row[0]) for row in rows}


def _toml(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "portal.toml"
    path.write_text(
        'tenant = "acme"\nrelay_url = "https://relay.example"\nrelay_token_file = "token"\n'
        'signing_key_file = "portal.key"\nsecret_key_file = "at-rest.key"\ndata_dir = "data"\n'
        + extra
    )
    return path


@pytest.mark.postgres
def test_a_right_code_checked_twice_at_once_is_accepted_once(postgres_dsn: str) -> None:
    """Two portal replicas (two pools) get the same code in the same instant: one
    accepts it, the other finds it used. Repeated, so a lucky schedule can't pass."""
    from cloud.portal.store_postgres import PostgresStore

    one, two = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        for round_ in range(20):
            key = f"flow{round_}:email"
            one.code_put(key, "right", T0 + 600, 5)
            results = _together([partial(s.code_check, key, "right", T0) for s in (one, two)])
            assert sorted(r.ok for r in results) == [False, True], (round_, results)
            assert not one.code_check(key, "right", T0).ok  # and it stays used
    finally:
        one.close()
        two.close()


@pytest.mark.postgres
def test_wrong_codes_at_once_each_cost_one_try(postgres_dsn: str) -> None:
    """Eight wrong guesses at once against five tries: five are counted down one by
    one (4, 3, 2, 1, 0), the other three find the code gone; none is lost."""
    from cloud.portal.store_postgres import PostgresStore

    store = PostgresStore(postgres_dsn, max_connections=8)
    try:
        store.code_put("k", "right", T0 + 600, 5)
        results = _together([lambda: store.code_check("k", "wrong", T0)] * 8)
        counted = sorted(r.tries_left for r in results if not r.expired)
        assert counted == [0, 1, 2, 3, 4]
        assert sum(r.expired for r in results) == 3
        assert not any(r.ok for r in results)
        assert store.code_check("k", "right", T0).expired  # five tries spent: gone
    finally:
        store.close()


@pytest.mark.postgres
def test_portal_and_relay_share_one_database(postgres_dsn: str) -> None:
    """Both migrate the same database, at the same time and again on restart, each in
    its own tables and version record, and neither sees the other's rows."""
    from cloud.portal import pg_migrations as portal_migrations
    from cloud.portal.store_postgres import PostgresStore as PortalStore
    from cloud.relay import pg_migrations as relay_migrations
    from cloud.relay.store_postgres import PostgresStore as RelayStore

    openers: list[Callable[[], Any]] = [
        lambda: RelayStore(postgres_dsn), lambda: PortalStore(postgres_dsn),
    ] * 2
    opened = _together(openers)  # two relays and two portals start together
    for store in opened:
        store.close()

    relay, portal = RelayStore(postgres_dsn), PortalStore(postgres_dsn)
    try:
        relay.add_tenant("acme", "token-hash", T0)
        now = time.time()  # a put may sweep what the database's clock says has expired
        portal.session_put("sid", {"user": "u@acme.example"}, now + 600)
        portal.method_put("u@acme.example", "email", {"address": "u@home.example"}, T0)
        assert relay.tenant_for_token("token-hash") == "acme"
        assert portal.session_get("sid", now) == {"user": "u@acme.example"}
        assert portal.schema_version() == portal_migrations.migrations()[-1].version
        assert relay.schema_version() == relay_migrations.migrations()[-1].version
    finally:
        relay.close()
        portal.close()

    tables = _tables(postgres_dsn)
    portal_tables = {"portal_schema_migrations", "portal_sessions", "portal_methods",
                     "portal_codes"}
    assert portal_tables <= tables
    assert "relay_schema_migrations" in tables and "tenants" in tables
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        portal_versions = conn.execute(
            "SELECT version FROM portal_schema_migrations ORDER BY 1").fetchall()
        relay_versions = conn.execute(
            "SELECT version FROM relay_schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in portal_versions] == [m.version for m in portal_migrations.migrations()]
    assert [v for (v,) in relay_versions] == [m.version for m in relay_migrations.migrations()]


@pytest.mark.postgres
def test_a_database_from_a_newer_portal_is_refused(postgres_dsn: str) -> None:
    import psycopg

    from cloud.portal.pg_migrations import SchemaTooNew
    from cloud.portal.store_postgres import PostgresStore

    PostgresStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO portal_schema_migrations (version, name) VALUES (999, 'x')")
    with pytest.raises(SchemaTooNew, match="999"):
        PostgresStore(postgres_dsn)


@pytest.mark.postgres
def test_database_url_from_the_environment_selects_postgres(
    tmp_path: Path, postgres_dsn: str
) -> None:
    from cloud.portal.store_postgres import PostgresStore

    toml = _toml(tmp_path)
    settings = load_settings(toml, environ={"WRITEBACK_PORTAL_DATABASE_URL": postgres_dsn})
    store = open_store(settings)
    try:
        assert isinstance(store, PostgresStore)
        # Real time: a put sweeps sessions expired by the database's clock now and then.
        now = time.time()
        store.session_put("env-sid", {"a": 1}, now + 600)
        assert store.session_get("env-sid", now) == {"a": 1}
    finally:
        store.close()
    assert not (tmp_path / "data" / "portal.sqlite3").exists()
    default = open_store(load_settings(toml, environ={}))  # unset: the SQLite file
    default.close()
    assert isinstance(default, SqliteStore) and (tmp_path / "data" / "portal.sqlite3").exists()
    # In the file too (the environment, when set, wins).
    from_file = load_settings(_toml(tmp_path, f'database_url = "{postgres_dsn}"\n'), environ={})
    assert from_file.database_url is not None
    assert from_file.database_url.get_secret_value() == postgres_dsn


def test_database_url_must_be_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        load_settings(_toml(tmp_path), environ={"WRITEBACK_PORTAL_DATABASE_URL": "mysql://x"})


@pytest.mark.postgres
def test_repr_and_errors_never_show_the_password(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    from cloud.portal.store_postgres import PostgresStore

    dsn = postgres_server.create_database().replace("postgres@", "postgres:Pg-Secret-42@")
    store = PostgresStore(dsn)  # trust auth: the password is carried, not needed
    try:
        assert "Pg-Secret-42" not in repr(store)
        assert str(postgres_server.port) in repr(store)
    finally:
        store.close()
    nowhere = f"postgresql://postgres:Pg-Secret-42@127.0.0.1:{postgres_server.port + 1}/x"
    settings = load_settings(_toml(tmp_path), environ={"WRITEBACK_PORTAL_DATABASE_URL": nowhere})
    assert "Pg-Secret-42" not in repr(settings)
    assert settings.database_label() == f"postgresql://127.0.0.1:{postgres_server.port + 1}/x"
    with pytest.raises(DatabaseUnavailable) as info:
        open_store(settings.model_copy(update={"db_pool_size": 1}))
    assert "Pg-Secret-42" not in str(info.value)
    assert f"127.0.0.1:{postgres_server.port + 1}/x" in str(info.value)


def test_missing_psycopg_says_what_to_install(tmp_path: Path) -> None:
    """The optional back end fails at import with the install command; the SQLite
    portal does not need it at all."""
    code = (
        "import sys, pathlib\n"
        "sys.modules['psycopg'] = None\n"
        "from cloud.portal.settings import load_settings\n"
        "from cloud.portal.store import open_store\n"
        f"open_store(load_settings(pathlib.Path({str(_toml(tmp_path))!r}), environ={{}})).close()\n"
        "try:\n"
        "    import cloud.portal.store_postgres\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60, check=True)
    assert "pip install 'writeback-agent[postgres]'" in out.stdout


@pytest.mark.postgres
def test_expired_sessions_and_codes_are_swept(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Now and then a session write drops what has expired, so the tables don't grow."""
    import psycopg

    from cloud.portal import store_postgres

    monkeypatch.setattr(store_postgres, "_SWEEP_ONE_IN", 1)  # every write sweeps
    store = store_postgres.PostgresStore(postgres_dsn)
    try:
        store.code_put("old-code", "h", T0, 5)  # T0 is long past
        store.code_put("live-code", "h", 4_000_000_000.0, 5)
        store.session_put("old", {}, T0)
        store.session_put("live", {}, 4_000_000_000.0)
    finally:
        store.close()
    with psycopg.connect(postgres_dsn) as conn:
        sessions = conn.execute("SELECT sid FROM portal_sessions").fetchall()
        codes = conn.execute("SELECT key FROM portal_codes").fetchall()
    assert sessions == [("live",)] and codes == [("live-code",)]


@pytest.mark.postgres
def test_serve_stops_with_the_reason_when_the_database_is_down(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cloud.portal.cli import main

    where = f"127.0.0.1:{postgres_server.port + 1}/portal"
    monkeypatch.setenv("WRITEBACK_PORTAL_DATABASE_URL", f"postgresql://p:Pg-Secret-42@{where}")
    assert main(["-c", str(_toml(tmp_path)), "serve"]) == 1
    err = capsys.readouterr().err
    assert f"cannot open postgresql://{where}" in err and "Pg-Secret-42" not in err
