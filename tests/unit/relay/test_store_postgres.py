"""What only the PostgreSQL store has: migrations, wake-ups across replicas, a clear
message when psycopg is missing, and no password in what it shows.

The behaviour it shares with SQLite is in test_store_contract.py."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.relay.notify import group_key, request_key
from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres
T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[3]


def _versions(dsn: str) -> list[tuple[int, str]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version, name FROM relay_schema_migrations ORDER BY 1")
        return [(int(v), str(n)) for v, n in rows.fetchall()]


def test_migrations_apply_once_and_record_their_version(postgres_dsn: str) -> None:
    from cloud.relay.pg_migrations import migrations
    from cloud.relay.store_postgres import PostgresStore

    shipped = [(m.version, m.name) for m in migrations()]
    assert shipped[0] == (1, "initial")
    first = PostgresStore(postgres_dsn)
    first.add_tenant("t1", "h1", T0)
    first.close()
    second = PostgresStore(postgres_dsn)  # a restart: nothing to apply, data kept
    try:
        assert second.schema_version() == shipped[-1][0]
        assert second.tenant_for_token("h1") == "t1"
    finally:
        second.close()
    assert _versions(postgres_dsn) == shipped


def test_relays_starting_together_migrate_once(postgres_dsn: str) -> None:
    """Without the advisory lock, CREATE TABLE races fail one of them."""
    from cloud.relay.pg_migrations import migrations
    from cloud.relay.store_postgres import PostgresStore

    starters = 6
    barrier = threading.Barrier(starters)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(postgres_dsn, max_connections=1))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for store in opened:
        store.close()
    assert not errors, errors
    assert len(opened) == starters
    assert [v for v, _ in _versions(postgres_dsn)] == [m.version for m in migrations()]


def test_an_older_database_is_upgraded_and_keeps_its_rows(postgres_dsn: str) -> None:
    """A database a relay of schema version 1 made (before write permits): its queued
    request gets a submit sequence number and can be leased and permitted."""
    import psycopg

    from cloud.relay.pg_migrations import migrations
    from cloud.relay.store_postgres import PostgresStore
    from wire.permits import PermitDecision

    first = migrations()[0]
    assert first.version == 1
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TABLE relay_schema_migrations (version integer PRIMARY KEY,"
                     " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(first.sql.encode())
        conn.execute("INSERT INTO relay_schema_migrations VALUES (1, 'initial')")
        conn.execute("INSERT INTO tenants VALUES ('t1', 'h1', %s)", (T0,))
        conn.execute("INSERT INTO agents (agent_id, tenant, agent_group, name, public_keys,"
                     " sign_key, enrolled_at) VALUES ('a1', 't1', 'g', 'n', '{}', 'k', %s)", (T0,))
        conn.execute("INSERT INTO requests (tenant, request_id, agent_group, envelope, exp,"
                     " created_at, state) VALUES ('t1', 'old', 'g', 'x', %s, %s, 'queued')",
                     (T0 + 600, T0))
    store = PostgresStore(postgres_dsn)
    try:
        assert store.schema_version() == migrations()[-1].version > 1
        store.add_request("t1", "new", "g", T0 + 600, b"y", now=T0 + 1)
        grant = store.lease("t1", "g", "a1", "L1", now=T0 + 2, lease_timeout=30)
        assert grant is not None and grant.request_id == "old"
        permit = store.permit("L1", "a1", "U", ordered=True, now=T0 + 2, lease_timeout=30)
        assert permit.decision is PermitDecision.GRANTED
    finally:
        store.close()


def test_a_database_from_a_newer_relay_is_refused(postgres_dsn: str) -> None:
    import psycopg

    from cloud.relay.backends import DatabaseUnavailable, open_store
    from cloud.relay.settings import RelayServerSettings
    from cloud.relay.store_postgres import PostgresStore

    PostgresStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO relay_schema_migrations (version, name) VALUES (9999, 'future')")
    with_password = postgres_dsn.replace("postgres@", "postgres:Pg-Secret-42@")
    with pytest.raises(DatabaseUnavailable) as info:
        open_store(RelayServerSettings(database_url=with_password))
    message = str(info.value)
    assert "schema version 9999" in message and "upgrade this relay" in message
    assert "Pg-Secret-42" not in message


def test_repr_and_errors_never_show_the_password(postgres_server: PostgresServer) -> None:
    from cloud.relay.backends import DatabaseUnavailable, open_store
    from cloud.relay.settings import RelayServerSettings
    from cloud.relay.store_postgres import PostgresStore

    dsn = postgres_server.create_database().replace("postgres@", "postgres:Pg-Secret-42@")
    store = PostgresStore(dsn)  # trust auth: the password is carried, not needed
    try:
        assert "Pg-Secret-42" not in repr(store)
        assert str(postgres_server.port) in repr(store)
    finally:
        store.close()
    nowhere = f"postgresql://postgres:Pg-Secret-42@127.0.0.1:{postgres_server.port + 1}/x"
    settings = RelayServerSettings(db=nowhere)  # --db takes the URL as well
    assert "Pg-Secret-42" not in repr(settings) and "Pg-Secret-42" not in settings.database_label()
    with pytest.raises(DatabaseUnavailable) as info:
        open_store(settings.model_copy(update={"db_pool_size": 1}))
    assert "Pg-Secret-42" not in str(info.value)
    assert f"127.0.0.1:{postgres_server.port + 1}/x" in str(info.value)


@pytest.fixture
def two_replicas(postgres_dsn: str) -> Iterator[tuple[object, object, queue.Queue[str]]]:
    """Two store handles on one database, the second listening (as two relays)."""
    from cloud.relay.store_postgres import PostgresStore

    writer, reader = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    woken: queue.Queue[str] = queue.Queue()
    reader.listen(woken.put)
    try:
        yield writer, reader, woken
    finally:
        writer.close()
        reader.close()


def _next(woken: queue.Queue[str]) -> str:
    return woken.get(timeout=5)


def test_a_replica_hears_what_another_one_stores(
    two_replicas: tuple[object, object, queue.Queue[str]],
) -> None:
    from cloud.relay.store import DuplicateError
    from cloud.relay.store_postgres import PostgresStore

    writer, _, woken = two_replicas
    assert isinstance(writer, PostgresStore)
    writer.add_tenant("t1", "h1", T0)  # nobody long-polls for these: no wake-up
    writer.add_enrollment_code("c", "t1", "g", T0 + 60, T0)
    writer.enroll("c", "a1", "n", {"sign_key": "k"}, "k", now=T0)
    writer.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    assert _next(woken) == group_key("t1", "g")  # the agents' lease long-poll
    with pytest.raises(DuplicateError):  # rolled back: must announce nothing
        writer.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    assert writer.lease("t1", "g", "a1", "L1", now=T0, lease_timeout=30) is not None
    writer.complete("L1", "r1", "a1", b"done", T0 + 1)
    assert _next(woken) == request_key("t1", "r1")  # the portal's result long-poll
    writer.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0)
    assert _next(woken) == group_key("t1", "g")
    assert writer.lease("t1", "g", "a1", "L2", now=T0, lease_timeout=30) is not None
    writer.release("L2", "a1")
    assert _next(woken) == group_key("t1", "g")
    assert writer.lease("t1", "g", "a1", "L3", now=T0, lease_timeout=30) is not None
    writer.remove_agent("a1", T0 + 2)  # its lease goes back to the queue
    assert _next(woken) == group_key("t1", "g")


def test_an_oversized_key_is_stored_without_a_wake_up(
    two_replicas: tuple[object, object, queue.Queue[str]],
) -> None:
    """NOTIFY payloads are limited to 8000 bytes: the write must not fail for it."""
    from cloud.relay.store_postgres import PostgresStore

    writer, _, woken = two_replicas
    assert isinstance(writer, PostgresStore)
    writer.add_tenant("t1", "h1", T0)
    writer.add_request("t1", "r1", "g" * 9000, T0 + 600, b"x", now=T0)
    writer.add_request("t1", "r2", "g", T0 + 600, b"x", now=T0)
    assert _next(woken) == group_key("t1", "g")
    assert writer.request_status("t1", "r1", T0) is not None


def test_missing_psycopg_says_what_to_install() -> None:
    """An optional back end fails at import with the install command; the SQLite relay
    does not need it at all."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "from cloud.relay.app import create_app\n"
        "from cloud.relay.settings import RelayServerSettings\n"
        "import tempfile, pathlib\n"
        "create_app(RelayServerSettings(db=pathlib.Path(tempfile.mkdtemp()) / 'r.db'))\n"
        "try:\n"
        "    import cloud.relay.store_postgres\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60, check=True)
    assert "pip install 'writeback-agent[postgres]'" in out.stdout


@pytest.fixture
def _keep_structlog_config() -> Iterator[None]:
    """The CLI configures structlog process-wide; put it back for the next tests."""
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("_keep_structlog_config")
def test_admin_commands_work_on_the_shared_database(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Admin commands open the same database the replicas serve; stdout is only the
    token (the migration log line goes to stderr)."""
    from cloud.relay.cli import main
    from cloud.relay.store_postgres import PostgresStore

    assert main(["--db", postgres_dsn, "tenant", "add", "acme"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("wbr_") and "\n" not in token
    assert main(["--db", postgres_dsn, "tenant", "add", "acme"]) == 1
    assert "exists" in capsys.readouterr().err
    store = PostgresStore(postgres_dsn)  # what a serving replica sees
    try:
        from cloud.relay.auth import hash_secret

        assert store.tenant_for_token(hash_secret(token)) == "acme"
    finally:
        store.close()


@pytest.mark.usefixtures("_keep_structlog_config")
def test_an_unreachable_database_is_a_clear_error(
    postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from cloud.relay.cli import main

    url = f"postgresql://relay:Pg-Secret-42@127.0.0.1:{postgres_server.port + 1}/relay"
    assert main(["--db", url, "tenant", "add", "acme"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("writeback-relay: cannot open postgresql://127.0.0.1:")
    assert "Pg-Secret-42" not in err


def test_the_listener_reconnects_after_losing_its_connection(
    two_replicas: tuple[object, object, queue.Queue[str]], postgres_dsn: str
) -> None:
    """A database restart or failover drops the LISTEN connection: wake-ups resume
    once it is back (the long-polls' re-check covers the gap)."""
    import psycopg

    from cloud.relay.store_postgres import LISTENER_NAME, PostgresStore

    writer, _, woken = two_replicas
    assert isinstance(writer, PostgresStore)
    writer.add_tenant("t1", "h1", T0)
    dbname = postgres_dsn.rsplit("/", 1)[1]
    query = ("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s"
             " AND query LIKE 'LISTEN %%'")  # connected AND listening
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        (old_pid,) = admin.execute(query, (LISTENER_NAME, dbname)).fetchone() or (None,)
        assert old_pid is not None
        admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            row = admin.execute(query, (LISTENER_NAME, dbname)).fetchone()
            if row is not None and row[0] != old_pid:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the listener did not reconnect within 15 s")
    writer.add_request("t1", "r1", "g", T0 + 600, b"x", now=T0)
    assert _next(woken) == group_key("t1", "g")


def test_a_database_restart_costs_at_most_one_failed_call(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    """After a restart every pooled connection is dead: one call fails (it cannot know
    whether its statement ran), the pool is checked, the next calls work, and the
    listener is back."""
    import psycopg

    from cloud.relay.store_postgres import PostgresStore

    store = PostgresStore(postgres_dsn, min_connections=4, max_connections=4)
    woken: queue.Queue[str] = queue.Queue()
    store.listen(woken.put)
    try:
        store.add_tenant("t1", "h1", T0)
        postgres_server.restart()
        failures = 0
        for _ in range(6):
            try:
                assert store.tenant_for_token("h1") == "t1"
            except psycopg.OperationalError:
                failures += 1
        assert failures <= 1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the listener reconnects with backoff
            store.add_request("t1", f"r{time.monotonic_ns()}", "g", T0 + 600, b"x", now=T0)
            try:
                assert woken.get(timeout=1) == group_key("t1", "g")
                break
            except queue.Empty:
                continue
        else:
            pytest.fail("no wake-up within 15 s of the restart")
    finally:
        store.close()
