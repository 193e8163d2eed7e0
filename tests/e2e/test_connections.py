"""The agent's directory connections (agent/connector_pool.py): requests one after
another all go over the one connection used last, whatever the number of workers;
a burst uses at most one connection per worker, and every user gets the password it
asked for."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.e2e.harness import AgentSystem, directory_entry
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess
from tests.servers.tcp_proxy import Link, TcpProxy, Verdict


class UsedLinks(TcpProxy):
    """Forwards TLS unchanged; remembers which connections the client sent on since
    `mark()` (what went through them is encrypted, that they were used is not)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._used: set[int] = set()
        self._marked = threading.Lock()
        super().__init__(upstream)

    def mark(self) -> None:
        with self._marked:
            self._used.clear()

    def used(self) -> int:
        with self._marked:
            return len(self._used)

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        with self._marked:
            self._used.add(id(link))
        return Verdict.PASS


def test_one_request_at_a_time_uses_one_connection(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path
) -> None:
    host, port = slapd_env.settings.urls[0].removeprefix("ldaps://").rsplit(":", 1)
    proxy = UsedLinks((host, int(port)))
    through = slapd_env.settings.model_copy(update={"urls": [f"ldaps://127.0.0.1:{proxy.port}"]})
    system = AgentSystem.create(
        tmp_path / "conns",
        relay,
        [directory_entry(through, tmp_path, name="main", default=True)],
        workers=4,
        relay={"url": relay.base_url, "lease_wait_seconds": 2.0, "timeout_seconds": 10.0},
    )
    logins = [unique_login("cn") for _ in range(14)]
    for login in logins:
        slapd_env.create_user(login, "Initial-Pass-1")
    try:
        with system.running():
            first = system.portal.send("reset", logins[0], new_password="Conn-0-Pass-x")
            assert first.status == "succeeded"
            time.sleep(0.5)  # the health probe at start has closed its own connection
            proxy.mark()
            for n, login in enumerate(logins[1:6], start=1):
                result = system.portal.send("reset", login, new_password=f"Conn-{n}-Pass-x")
                assert result.status == "succeeded"
            assert proxy.used() == 1, "one request at a time, yet several connections used"

            proxy.mark()
            burst = [
                system.portal.request("reset", login, new_password=f"Conn-{n}-Pass-x")
                for n, login in enumerate(logins[6:], start=6)
            ]
            for request in burst:
                system.portal.submit(request)
            for request in burst:
                assert system.portal.wait(request, timeout=60).status == "succeeded"
            assert 1 <= proxy.used() <= 4
        for n, login in enumerate(logins):
            assert slapd_env.bind(login, f"Conn-{n}-Pass-x") is BindOutcome.OK
    finally:
        system.close()
        proxy.close()
