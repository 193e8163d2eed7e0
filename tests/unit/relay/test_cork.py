"""An answer of the hot path leaves in one write (cloud/relay/cork.py), with the same
bytes as uvicorn writes without the cork."""

from __future__ import annotations

from pathlib import Path

import httpx

from cloud.relay.cork import CorkedTransport
from tests.servers.relay import raw_connection, read_json_answer, start_relay


class _Recorder:
    """The transport below the cork: what was written, call by call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _corked() -> tuple[CorkedTransport, _Recorder]:
    below = _Recorder()
    return CorkedTransport(below), below  # type: ignore[arg-type]


def test_writes_between_cork_and_uncork_go_out_as_one() -> None:
    corked, below = _corked()
    corked.write(b"before")
    corked.cork()
    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.write(memoryview(b"body"))
    assert below.writes == [b"before"]
    corked.uncork()
    corked.write(b"after")
    assert below.writes == [b"before", b"HTTP/1.1 200 OK\r\n\r\nbody", b"after"]


def test_close_writes_what_was_held_first_and_the_rest_is_the_transports() -> None:
    corked, below = _corked()
    corked.cork()
    corked.write(b"held")
    assert not corked.is_closing()
    corked.close()
    assert below.writes == [b"held"] and below.closed and corked.is_closing()


def _raw_answer(base_url: str, request: bytes) -> bytes:
    with raw_connection(base_url) as sock:
        sock.sendall(request)
        return read_json_answer(sock)


def test_a_hot_answer_is_the_same_http_answer(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    try:
        _, token = relay.create_tenant()
        body = b'{"ids":["nope"]}'
        request = (
            b"POST /v1/requests/results:wait HTTP/1.1\r\nHost: relay\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = _raw_answer(relay.base_url, request)
        head, _, payload = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert b"content-type: application/json" in lines
        assert f"content-length: {len(payload)}".encode() in lines
        assert payload == b'{"requests":[{"id":"nope","state":"unknown","result":null}]}'
        same = httpx.post(relay.base_url + "/v1/requests/results:wait", content=body,
                          headers={"Authorization": f"Bearer {token}",
                                   "Content-Type": "application/json"})
        assert same.content == payload
    finally:
        relay.stop()

