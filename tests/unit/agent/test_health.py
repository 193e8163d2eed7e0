"""The health server answers over real HTTP on a loopback port and follows the state."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator

import httpx
import pytest
import structlog

from agent.backlog import DirectoryBacklog
from agent.health import HealthServer, HealthState
from agent.logging import configure_logging
from agent.metrics import Metrics


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def state(clock: _Clock) -> HealthState:
    return HealthState(wedge_after=30.0, clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(state: HealthState, metrics: Metrics) -> Iterator[httpx.Client]:
    server = HealthServer(state, metrics)
    port = server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as c:
            yield c
    finally:
        server.stop()


def _make_ready(state: HealthState) -> None:
    state.mark_started()
    state.set_relay_ok(True)
    state.set_directory("corp-ad", True)


def test_healthz_ok_while_the_loop_beats(
    client: httpx.Client, state: HealthState, clock: _Clock
) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    clock.now += 31  # the loop has not beaten for longer than wedge_after
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (503, {"status": "wedged"})
    state.beat()
    assert client.get("/healthz").status_code == 200


def test_readyz_flips_with_the_state(client: httpx.Client, state: HealthState) -> None:
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["failing"] == ["started", "relay", "directories"]

    _make_ready(state)
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"

    state.set_relay_ok(False)
    r = client.get("/readyz")
    assert (r.status_code, r.json()["failing"]) == (503, ["relay"])

    state.set_relay_ok(True)
    state.set_directory("corp-ad", False)
    r = client.get("/readyz")
    assert (r.status_code, r.json()["failing"]) == (503, ["directories"])

    state.set_directory("corp-ad", True)
    state.mark_stopping()
    r = client.get("/readyz")
    assert (r.status_code, r.json()["failing"]) == (503, ["stopping"])


def test_one_directory_down_of_two_is_degraded_not_unready(
    client: httpx.Client, state: HealthState
) -> None:
    _make_ready(state)
    state.set_directory("ldap", False)
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["degraded"] == ["ldap"]
    assert r.json()["directories"] == {"corp-ad": True, "ldap": False}


def test_a_wedged_loop_is_not_ready(
    client: httpx.Client, state: HealthState, clock: _Clock
) -> None:
    _make_ready(state)
    clock.now += 60
    r = client.get("/readyz")
    assert (r.status_code, r.json()["failing"]) == (503, ["live"])


def test_metrics_exposes_the_counters(client: httpx.Client, metrics: Metrics) -> None:
    metrics.observe_request("reset", "succeeded", 0.3)
    metrics.observe_request("reset", "succeeded", 0.1)
    metrics.rejected("expired")
    metrics.set_directory_up("corp-ad", True)
    metrics.set_relay_up(True)
    metrics.set_key_expiry("portal-2025", 86400)
    backlog = DirectoryBacklog(4)
    metrics.watch_directory_writing("corp-ad", lambda: backlog.writing("corp-ad"))
    writes = [backlog.write_started("corp-ad") for _ in range(3)]
    backlog.write_ended(writes.pop())
    with metrics.in_flight():
        text = client.get("/metrics").text
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'writeback_requests_total{op="reset",status="succeeded"} 2.0' in r.text
    assert 'writeback_request_duration_seconds_count{op="reset"} 2.0' in r.text
    assert 'writeback_rejected_total{reason="expired"} 1.0' in r.text
    assert 'writeback_directory_up{directory="corp-ad"} 1.0' in r.text
    assert "writeback_relay_up 1.0" in r.text
    assert 'writeback_key_expiry_seconds{key="portal-2025"} 86400.0' in r.text
    assert "writeback_in_flight 1.0" in text
    assert "writeback_in_flight 0.0" in r.text
    assert 'writeback_directory_writing{directory="corp-ad"} 2.0' in r.text


def test_request_series_by_op_and_status_share_the_op_histogram(metrics: Metrics) -> None:
    """The labelled children are looked up once per (op, status) and reused: every
    observation still lands in its own counter and in its op's one histogram."""
    for status in ("succeeded", "policy_violation", "succeeded"):
        metrics.observe_request("reset", status, 0.02)
    metrics.observe_request("change", "succeeded", 2.0)
    text = metrics.render()[0].decode()
    assert 'writeback_requests_total{op="reset",status="succeeded"} 2.0' in text
    assert 'writeback_requests_total{op="reset",status="policy_violation"} 1.0' in text
    assert 'writeback_requests_total{op="change",status="succeeded"} 1.0' in text
    assert 'writeback_request_duration_seconds_count{op="reset"} 3.0' in text
    assert 'writeback_request_duration_seconds_bucket{le="0.025",op="reset"} 3.0' in text
    assert 'writeback_request_duration_seconds_bucket{le="1.0",op="change"} 0.0' in text


def test_in_flight_is_released_when_the_block_raises(metrics: Metrics) -> None:
    with pytest.raises(RuntimeError), metrics.in_flight():
        raise RuntimeError("boom")
    assert b"writeback_in_flight 0.0" in metrics.render()[0]


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.rejected("replayed")
    assert b"replayed" in a.render()[0]
    assert b"replayed" not in b.render()[0]


def test_unknown_path_is_404(client: httpx.Client) -> None:
    r = client.get("/admin")
    assert (r.status_code, r.json()) == (404, {"status": "not_found"})
    assert "Python" not in r.headers.get("server", "")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])  # noqa: S104  # the point
def test_refuses_non_loopback_without_allow_remote(
    host: str, state: HealthState, metrics: Metrics
) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        HealthServer(state, metrics, host=host)


def test_allow_remote_binds_any_address(state: HealthState, metrics: Metrics) -> None:
    with HealthServer(state, metrics, host="0.0.0.0", allow_remote=True) as server:  # noqa: S104
        assert server.port
        r = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5.0)
        assert r.status_code == 200


def test_ipv6_loopback(state: HealthState, metrics: Metrics) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        server = HealthServer(state, metrics, host="::1")
        port = server.start()
    except OSError as exc:  # IPv6 disabled on lo
        pytest.skip(f"cannot bind ::1: {exc}")
    try:
        assert httpx.get(f"http://[::1]:{port}/healthz", timeout=5.0).status_code == 200
    finally:
        server.stop()


def test_stop_closes_the_port_and_is_idempotent(state: HealthState, metrics: Metrics) -> None:
    server = HealthServer(state, metrics)
    server.stop()  # before start: nothing to do
    port = server.start()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()
    assert server.port is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0)


def test_request_logs_go_through_our_logging_at_debug(
    state: HealthState, metrics: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        configure_logging("debug", stream=out)
        with HealthServer(state, metrics) as server:
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5.0)
            httpx.get(f"http://127.0.0.1:{server.port}/nope", timeout=5.0)
    finally:
        for h in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(h)
        root.setLevel(level)
        for name in ("httpx", "httpcore", "apscheduler"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        structlog.reset_defaults()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    http = [e for e in events if e["event"] == "health.http"]
    assert [(e["level"], e["http_status"]) for e in http] == [("debug", 200), ("debug", 404)]
    assert "GET /healthz" in http[0]["request"]
    assert capsys.readouterr().err == ""  # http.server prints nothing of its own
