"""A tiny real HTTP/1.1 server on loopback whose answers a test scripts: for the
client-side faults a real relay does not produce on demand (a 500, a dropped
connection, a slow answer, a redirect, garbage), over real sockets.

    with ScriptedServer(lambda req: Reply(503, {"error": "busy"})) as server:
        RelayTransport(server.url, ...)
        server.requests      # every request as received (method, raw target, headers, body)
        server.connections   # how many TCP connections were accepted

A script returns a `Reply`, or DROP (close the connection without answering), or
GARBAGE (answer bytes that are not HTTP). A `Reply(raw=...)` sends its bytes as they
are (a malformed header, a chunked body), closing after them with close=True. With
`cert` the server speaks TLS.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers.certs import ServerCert


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False  # "Connection: close" after this answer
    raw: bytes | None = None  # sent as the whole answer instead (status line and all)


DROP = "drop"
GARBAGE = "garbage"
Script = Callable[[Received], "Reply | str"]


class ScriptedServer:
    def __init__(self, script: Script, *, cert: ServerCert | None = None) -> None:
        self.requests: list[Received] = []
        self.connections = 0
        self.script = script
        self._open: list[socket.socket] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                owner._open.append(self.request)
                super().setup()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                owner.requests.append(received)
                reply = owner.script(received)
                if reply == DROP:
                    self.close_connection = True
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                if reply == GARBAGE:
                    self.close_connection = True
                    self.wfile.write(b"this is not HTTP\r\n\r\n")
                    return
                assert isinstance(reply, Reply)
                time.sleep(reply.delay)
                if reply.raw is not None:
                    self.close_connection = reply.close
                    self.wfile.write(reply.raw)
                    return
                body = b"" if reply.json is None else json.dumps(reply.json).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.status not in (204, 304):
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                if reply.close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert.cert_file, cert.key_file)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def drop_idle_connections(self) -> None:
        """Close every connection from the server side (as a relay restart or an idle
        timeout does), and wait until the clients can see it."""
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._open.clear()
        time.sleep(0.2)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
