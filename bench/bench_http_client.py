"""Client-side CPU per HTTP call, by client library: what one relay call costs the
process that makes it (the agent, the portal), not the relay.

    .venv/bin/python bench/bench_http_client.py [--calls 2000] [--runs 3] [--no-tls]

Single thread, one keep-alive connection, `time.process_time()` over N calls, for:

- httpx      an `httpx.Client` as RelayTransport / PortalClient configured it
             (base_url, default headers, per-call timeout, build_request + send)
- urllib3    an `HTTPConnectionPool` / `HTTPSConnectionPool` (maxsize 1, retries off)
- http.client  one persistent `HTTPConnection` / `HTTPSConnection`
- + AnswerHead the same, reading the answer's header with wire.http_answer (as
             wire.http_connection does) instead of http.client's email parser
- transport  this checkout's `agent.transports.relay.RelayTransport` itself (the
             signed lease call only: whatever client it is built on)

Calls, against the real relay (`writeback-relay serve` on SQLite, from
tests/servers/relay.py): `GET /healthz`, and a signed `POST /v1/agent/lease?wait=0`
answered 204 (nothing queued; the Ed25519 signature is part of the cost, the same for
every library). With TLS (default on): the relay has no TLS option, so a small
HTTPS server in its own process (stdlib http.server, HTTP/1.1 keep-alive, answers
204) stands in, and only `GET /healthz` is timed over it; the client verifies it
against a throwaway CA (tests/servers/certs.py).

Each figure is the median of --runs runs, in microseconds of client CPU per call.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import httpx
import urllib3

from agent.transports.relay import authorization_header
from tests.servers._process import free_port
from tests.servers.certs import make_server_cert
from tests.servers.relay import EnrolledAgent, start_relay
from wire import http_answer

Call = Callable[[], int]

_TLS_SERVER = textwrap.dedent(
    """
    import ssl, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def _answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            self.send_response(204)
            self.end_headers()
        do_GET = do_POST = _answer
        def log_message(self, *a):
            pass

    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = ThreadingHTTPServer(("127.0.0.1", port), H)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
    """
)


def _cpu_per_call(call: Call, calls: int, expect: int) -> float:
    for _ in range(min(50, calls)):  # warm up: connect, TLS handshake, caches
        assert call() == expect  # noqa: S101
    started = time.process_time()
    for _ in range(calls):
        status = call()
    elapsed = time.process_time() - started
    assert status == expect  # noqa: S101
    return elapsed / calls * 1e6


def _signed(agent: EnrolledAgent, path: bytes) -> dict[str, str]:
    return {
        "Authorization": authorization_header(agent.signing_key, agent.agent_id, "POST", path, b"")
    }


LEASE = b"/v1/agent/lease?wait=0"


def _stdlib_call(conn: http.client.HTTPConnection, agent: EnrolledAgent | None) -> Call:
    def call() -> int:
        if agent is None:
            conn.request("GET", "/healthz", headers={"User-Agent": "writeback-agent"})
        else:
            conn.request("POST", LEASE.decode(), body=b"", headers={
                "User-Agent": "writeback-agent", **_signed(agent, LEASE)})
        response = conn.getresponse()
        response.read()
        return response.status

    return call


def _clients(
    base: str, agent: EnrolledAgent | None, context: ssl.SSLContext | None
) -> dict[str, tuple[Call, Callable[[], None]]]:
    """name -> (one call, close). With an agent: the signed lease; without: /healthz."""
    host, port = base.split("://")[1].split(":")
    tls = base.startswith("https")
    out: dict[str, tuple[Call, Callable[[], None]]] = {}

    hx = httpx.Client(base_url=base, timeout=10.0, verify=context or True,
                      headers={"User-Agent": "writeback-agent"})

    def httpx_call() -> int:
        if agent is None:
            request = hx.build_request("GET", "/healthz", timeout=10.0)
        else:
            request = hx.build_request("POST", "/v1/agent/lease", params={"wait": "0"},
                                       content=b"", timeout=20.0)
            request.headers.update(_signed(agent, request.url.raw_path))
        response = hx.send(request)
        response.read()
        return response.status_code

    out["httpx"] = (httpx_call, hx.close)

    pool = (
        urllib3.HTTPSConnectionPool(host, int(port), maxsize=1, block=False, retries=False,
                                    headers={"User-Agent": "writeback-agent"},
                                    ssl_context=context)
        if tls else
        urllib3.HTTPConnectionPool(host, int(port), maxsize=1, block=False, retries=False,
                                   headers={"User-Agent": "writeback-agent"})
    )

    def urllib3_call() -> int:
        if agent is None:
            r = pool.urlopen("GET", "/healthz", timeout=10.0, redirect=False,
                             preload_content=True)
        else:
            r = pool.urlopen("POST", LEASE.decode(), body=b"", headers={
                "User-Agent": "writeback-agent", **_signed(agent, LEASE)},
                timeout=20.0, redirect=False, preload_content=True)
        return r.status

    out["urllib3"] = (urllib3_call, pool.close)

    for name, module in (("http.client", http.client), ("+ AnswerHead", http_answer)):
        conn: http.client.HTTPConnection = (
            module.HTTPSConnection(host, int(port), timeout=10.0, context=context)
            if tls else module.HTTPConnection(host, int(port), timeout=10.0)
        )
        out[name] = (_stdlib_call(conn, agent), conn.close)

    if agent is not None:
        transport = agent.transport()

        def transport_call() -> int:
            assert transport.lease(wait=0) is None  # noqa: S101
            return 204

        out["RelayTransport"] = (transport_call, transport.close)
    return out


def _measure(base: str, agent: EnrolledAgent | None, context: ssl.SSLContext | None,
             *, calls: int, runs: int, expect: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        clients = _clients(base, agent, context)
        for name, (call, close) in clients.items():
            try:
                samples.setdefault(name, []).append(_cpu_per_call(call, calls, expect))
            finally:
                close()
    return {name: statistics.median(values) for name, values in samples.items()}


def _print(title: str, figures: dict[str, float]) -> None:
    base = figures.get("httpx")
    print(f"\n{title}")
    for name, us in figures.items():
        ratio = f"{us / base:5.0%} of httpx" if base else ""
        print(f"  {name:15s} {us:8.0f} us CPU/call  {ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-tls", action="store_true")
    args = parser.parse_args()
    print(f"httpx {httpx.__version__}, urllib3 {version('urllib3')}, Python "
          f"{sys.version.split()[0]}; {args.calls} calls x {args.runs} runs, load "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        # The per-tenant long-poll limit (1000/s) is below what one fast client makes.
        relay = start_relay(Path(tmp) / "relay", log_level="warning",
                            long_poll_rate="1000000/second")
        try:
            tenant, _ = relay.create_tenant()
            agent = relay.enroll_agent(tenant)
            _print("GET /healthz (http, real relay)",
                   _measure(relay.base_url, None, None, calls=args.calls, runs=args.runs,
                            expect=200))
            _print("signed POST /v1/agent/lease?wait=0 -> 204 (http, real relay)",
                   _measure(relay.base_url, agent, None, calls=args.calls, runs=args.runs,
                            expect=204))
        finally:
            relay.stop()
        if not args.no_tls:
            cert = make_server_cert(Path(tmp), ["127.0.0.1"])
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, "-c", _TLS_SERVER, str(port), str(cert.cert_file),
                 str(cert.key_file)], stdout=subprocess.PIPE)
            try:
                assert server.stdout is not None  # noqa: S101
                server.stdout.readline()
                context = ssl.create_default_context(cafile=str(cert.ca_file))
                _print("GET -> 204 over TLS (stdlib HTTPS server, verified)",
                       _measure(f"https://127.0.0.1:{port}", None, context,
                                calls=args.calls, runs=args.runs, expect=204))
            finally:
                server.terminate()
                server.wait(10)
    print(f"\nload at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
