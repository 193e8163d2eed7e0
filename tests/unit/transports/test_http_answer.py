"""wire.http_answer over real sockets (tests/servers/scripted_http.py): the answer
header reader keeps http.client's limits and refuses what it cannot read."""

from __future__ import annotations

import http.client

import pytest

from tests.servers.scripted_http import Reply, ScriptedServer
from wire.http_answer import IncompleteHeader, MalformedHeader
from wire.http_connection import Connections

OK = b"HTTP/1.1 200 OK\r\n"


def _call(raw: bytes, *, close: bool = False) -> tuple[int, dict[str, str], bytes, int]:
    answers = iter([Reply(raw=raw, close=close), Reply(204)])
    with ScriptedServer(lambda r: next(answers)) as server:
        conns = Connections(server.url, context=None, headers={})
        try:
            answer = conns.request("GET", "/a", headers={}, timeout=5)
            assert conns.request("GET", "/b", headers={}, timeout=5).status == 204
        finally:
            conns.close()
        return answer.status, dict(answer.headers.items()), answer.body, server.connections


def test_a_plain_answer_with_a_folded_header_and_keep_alive() -> None:
    raw = OK + b"Content-Length: 2\r\nX-Long: a\r\n \tb\r\nLocation:  /x \r\n\r\n{}"
    status, headers, body, connections = _call(raw)
    assert (status, body, connections) == (200, b"{}", 1)
    assert headers["X-Long"] == "a b" and headers["Location"] == "/x"


def test_a_chunked_body_is_read_whole_and_the_connection_kept() -> None:
    raw = OK + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    status, _, body, connections = _call(raw)
    assert (status, body, connections) == (200, b"abcde", 1)


def test_no_content_length_reads_to_the_close() -> None:
    status, _, body, connections = _call(OK + b"X: y\r\n\r\nuntil close", close=True)
    assert (status, body, connections) == (200, b"until close", 2)


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        (OK + b"X: " + b"a" * 65536 + b"\r\n\r\n", http.client.LineTooLong, "header line"),
        (OK + b"X: y\r\n" * 101 + b"\r\n", http.client.HTTPException, "more than 100"),
        (OK + b"no colon here\r\n\r\n", MalformedHeader, "not 'name: value'"),
        (OK + b"Bad Name: x\r\n\r\n", MalformedHeader, "not 'name: value'"),
        (OK + b" folded first\r\n\r\n", MalformedHeader, "folded"),
        (OK + b"Content-Length: 2\r\n", IncompleteHeader, "closed inside"),
    ],
)
def test_an_unreadable_header_fails_the_call_and_drops_the_connection(
    raw: bytes, error: type[Exception], text: str
) -> None:
    answers = iter([Reply(raw=raw, close=True), Reply(204)])
    with ScriptedServer(lambda r: next(answers)) as server:
        conns = Connections(server.url, context=None, headers={})
        try:
            with pytest.raises(error, match=text):
                conns.request("GET", "/a", headers={}, timeout=5)
            assert conns.request("GET", "/b", headers={}, timeout=5).status == 204
        finally:
            conns.close()
        assert (server.connections, len(server.requests)) == (2, 2)  # nothing re-sent
