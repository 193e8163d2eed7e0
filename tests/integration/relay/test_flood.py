"""One tenant floods a relay that has few file descriptors (like `ulimit -n` on a small
host): header-trickling connections and more long-polls than its cap. Another
tenant's submit and /healthz must still answer."""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.servers.relay import EnrolledAgent, RelayProcess, fake_envelope

OPEN_FILES = 128
TRICKLERS = 160


def _address(relay: RelayProcess) -> tuple[str, int]:
    parts = urlsplit(relay.base_url)
    return str(parts.hostname), int(parts.port or 80)


def _wait_closed(socks: list[socket.socket], deadline: float) -> int:
    """How many of `socks` the relay closed (EOF or reset) before `deadline`."""
    open_ = list(socks)
    closed = 0
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(open_, [], [], 0.5)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed += 1
                open_.remove(sock)
                sock.close()
    for sock in open_:
        sock.close()
    return closed


def _lease(agent: EnrolledAgent, wait: float, answers: list[int]) -> None:
    with agent.transport() as transport:
        try:
            transport.lease(wait=wait)
            answers.append(200)
        except Exception as exc:  # noqa: BLE001 - the status is what the test counts
            answers.append(int(getattr(exc, "status", 0) or 0))


@pytest.mark.slow
def test_flooding_tenant_does_not_starve_another(
    relay_factory: Callable[..., RelayProcess],
) -> None:
    relay = relay_factory(header_timeout=1, max_long_polls_per_tenant=4)
    (a, _), (b, b_token) = relay.create_tenant(), relay.create_tenant()
    flooders = [relay.enroll_agent(a) for _ in range(8)]
    relay.enroll_agent(b)
    resource.prlimit(relay.proc.pid, resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    answers: list[int] = []
    polls = [threading.Thread(target=_lease, args=(f, 6.0, answers)) for f in flooders]
    for thread in polls:
        thread.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(TRICKLERS):  # more than the relay has file descriptors
            sock = socket.create_connection(_address(relay), timeout=5)
            sock.setblocking(False)
            sock.send(b"POST /v1/requests HTTP/1.1\r\nHost: relay\r\n")
            socks.append(sock)

        started = time.monotonic()
        with relay.portal(b_token, timeout=15) as portal:
            portal.submit(fake_envelope(b))
        submit_took = time.monotonic() - started
        healthz = httpx.get(relay.base_url + "/healthz", timeout=15)
        closed = _wait_closed(socks, deadline=time.monotonic() + 20)
    finally:
        for sock in socks:  # a failure must not leak 160 sockets into the next test
            sock.close()
        for thread in polls:
            thread.join()

    assert healthz.status_code == 200
    assert submit_took < 10, f"tenant B's submit took {submit_took:.1f}s"
    assert closed == TRICKLERS
    assert answers.count(429) >= len(flooders) - 4  # over the cap: refused at once
    assert relay.proc.poll() is None


def test_a_body_that_never_arrives_gets_408(relay_factory: Callable[..., RelayProcess]) -> None:
    relay = relay_factory(body_timeout=1)
    with socket.create_connection(_address(relay), timeout=10) as sock:
        sock.sendall(b"POST /v1/agents/enroll HTTP/1.1\r\nHost: relay\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"co")
        started = time.monotonic()
        answer = b""
        while b"}" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"body_timeout" in answer
    assert time.monotonic() - started < 5
