"""The header deadline on keep-alive connections (server.header_timeout_protocol): it
runs from the end of each answer to the end of the next request's headers, so a
connection in steady use is never cut, and one that trickles its next request is."""

from __future__ import annotations

import time
from pathlib import Path

from tests.servers.relay import raw_connection, read_json_answer, start_relay

_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"


def test_a_connection_in_steady_use_outlives_the_deadline(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, header_timeout=1)
    try:
        with raw_connection(relay.base_url) as sock:
            started = time.monotonic()
            while time.monotonic() - started < 3.0:  # three deadlines long
                sock.sendall(_HEALTHZ)
                assert read_json_answer(sock).startswith(b"HTTP/1.1 200")
                time.sleep(0.4)
    finally:
        relay.stop()


def test_a_trickled_next_request_is_cut_at_the_deadline(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, header_timeout=1)
    try:
        with raw_connection(relay.base_url) as sock:
            for _ in range(3):  # the deadline moves with each answer
                time.sleep(0.6)
                sock.sendall(_HEALTHZ)
                assert read_json_answer(sock).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
            sock.settimeout(5)
            assert sock.recv(1024) == b""  # closed by the relay
            took = time.monotonic() - answered
        assert 0.9 <= took < 2.5, took
    finally:
        relay.stop()
