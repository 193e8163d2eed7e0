"""A TCP forwarder between one agent and the relay that cuts some result posts.

Agents talk HTTP/1.1 with keep-alive, one request at a time per connection, so every
client->relay chunk that starts a request starts with its request line. When that line
is a result post (`POST /v1/agent/results`, or `/v1/agent/results/batch` carrying
several results) and the dice say so, the post is cut in one of two ways:

- `lost`: the request is swallowed (never reaches the relay) and the connection is
  closed: the agent sent its result and the relay never heard of it;
- `unanswered`: the request is forwarded, and the relay's answer is swallowed and the
  connection closed: the relay stored the result, the agent cannot know.

`on_cut(kind)` is called for each cut (the fault scheduler may kill the agent right
then: the "result post lost, then the writer dies" case of issue 8).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Callable

_RESULTS = (b"POST /v1/agent/results ", b"POST /v1/agent/results/batch ")


class CutProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        cut_probability: float,
        seed: int,
        on_cut: Callable[[str], None] | None = None,
    ) -> None:
        self._upstream = upstream
        self._probability = cut_probability
        self._random = random.Random(seed)
        self._dice = threading.Lock()
        self._on_cut = on_cut
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.cuts = {"lost": 0, "unanswered": 0}
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="cutproxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _roll(self) -> str | None:
        with self._dice:
            if self._random.random() >= self._probability:
                return None
            return self._random.choice(("lost", "unanswered"))

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:  # relay down (restart): the agent sees a reset and retries
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            cut = threading.Event()  # set: swallow the relay's answer, then close
            threading.Thread(target=self._up, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, cut), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        try:
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                kind = self._roll() if chunk.startswith(_RESULTS) else None
                if kind == "lost":
                    self._count(kind)
                    break  # swallowed: close both ends below
                if kind == "unanswered":
                    self._count(kind)
                    cut.set()
                server.sendall(chunk)
        except OSError:
            pass
        finally:
            if not cut.is_set():
                self._close(client, server)

    def _down(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        try:
            while True:
                chunk = server.recv(65536)
                if not chunk or cut.is_set():
                    break  # the answer to a cut post is never passed on
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            self._close(client, server)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.cuts[kind] += 1
        if self._on_cut is not None:
            self._on_cut(kind)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        self._close(*socks)
