"""A lone request holds the agent's next lease long-poll back until its directory write
(agent/idle_workers.py): the long-poll's work (signing it, the relay checking it and
answering) then stays off that request's own way to its write, the envelope's checks,
the lookup and the write permit, which all need the same two cores."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess
from tests.servers.tcp_proxy import Link, TcpProxy, Verdict

LEASE_POLLS = ("/v1/agent/leases", "/v1/agent/lease")  # the long-polls (not .../permit)


class AgentCalls(TcpProxy):
    """Between the agent and the relay: when each agent call's request line went by."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[float, str]] = []
        super().__init__(upstream)

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        line = chunk.split(b"\r\n", 1)[0].decode("latin-1")
        if line.startswith("POST /v1/agent/"):
            with self._lock:
                self._calls.append((time.monotonic(), line.split(" ")[1]))
        return Verdict.PASS

    def since(self, start: float) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, path) for at, path in self._calls if at >= start]


class SlowAnswers(TcpProxy):
    """Between the agent and the directory: while `slow` is set, each answer is held
    `delay` seconds (a DC far away or busy), so the lookup takes that long at least."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.slow = threading.Event()
        self._delay = delay
        super().__init__(upstream)

    def from_server(self, link: Link, chunk: bytes) -> Verdict:
        if self.slow.is_set():
            time.sleep(self._delay)
        return Verdict.PASS


def test_a_lone_request_holds_the_next_lease_call_until_its_write(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path
) -> None:
    host, port = relay.base_url.removeprefix("http://").rsplit(":", 1)
    calls = AgentCalls((host, int(port)))
    dc_host, dc_port = slapd_env.settings.urls[0].removeprefix("ldaps://").rsplit(":", 1)
    directory = SlowAnswers((dc_host, int(dc_port)), delay=0.05)
    through = slapd_env.settings.model_copy(
        update={"urls": [f"ldaps://127.0.0.1:{directory.port}"]}
    )
    system = AgentSystem.create(
        tmp_path / "lone",
        relay,
        [directory_entry(through, tmp_path, name="main", default=True)],
        workers=4,
        directory_deadline_seconds=10.0,
        relay={
            "url": f"http://127.0.0.1:{calls.port}",
            "lease_wait_seconds": 20.0,  # the parked long-poll outlasts the test's request
            "timeout_seconds": 10.0,
        },
    )
    warm, lone = unique_login("lw"), unique_login("lo")
    for login in (warm, lone):
        slapd_env.create_user(login, "Initial-Pass-1")
    try:
        with system.running():
            system.portal.wait_online()
            assert system.portal.send("reset", warm, new_password="Lone-Warm-Pass-1").status == (
                "succeeded"
            )
            time.sleep(0.5)  # the long-poll after the warm-up is parked at the relay
            directory.slow.set()
            start = time.monotonic()
            result = system.portal.send("reset", lone, new_password="Lone-Pass-Lone-1")
            done = time.monotonic()
            directory.slow.clear()
            assert result.status == "succeeded", result
            seen = calls.since(start)
            permits = [at for at, path in seen if "/permit" in path]
            leases = [at for at, path in seen if path.split("?")[0] in LEASE_POLLS]
            assert permits, seen
            assert leases, f"no lease long-poll after the request was handed over: {seen}"
            # The long-poll parked before the submit answered with the request; the next
            # one went out after the request's write permit (the write was under way),
            # not within milliseconds of the hand-over, in the middle of its lookup.
            assert leases[0] > permits[0], seen
            assert leases[0] < done  # and during the write, not only after the answer
        assert slapd_env.bind(lone, "Lone-Pass-Lone-1") is BindOutcome.OK
    finally:
        system.close()
        calls.close()
        directory.close()
