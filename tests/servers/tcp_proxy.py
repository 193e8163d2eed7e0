"""A TCP forwarder on loopback that tests and the chaos bench put between a client and a
real server to inject real network faults (held answers, cut posts, dropped
connections) at an exact point of the protocol.

`TcpProxy` owns the plumbing: a listener on 127.0.0.1 (free port), one upstream
connection per client, one thread per direction. A subclass decides what happens to
each chunk (`from_client` / `from_server` return a `Verdict`), may refuse a new client
(`admit`) and may leave a connection hanging when a direction ends (`keep_open`):
a client that is never answered and never reset is how "the answer was lost" looks.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    PASS = "pass"  # forward the chunk
    DROP = "drop"  # swallow the chunk, keep reading
    PASS_THEN_CLOSE = "pass_then_close"  # forward the chunk, then close both ends
    CLOSE = "close"  # swallow the chunk and close both ends


@dataclass
class Link:
    """One client connection and its upstream. `cut` is the subclass's per-connection
    mark (e.g. "this connection's post was cut")."""

    client: socket.socket
    server: socket.socket
    cut: threading.Event = field(default_factory=threading.Event)


class TcpProxy:
    """Forwards every chunk unchanged; subclasses override the hooks below. Set a
    subclass's own attributes before calling `super().__init__`: connections may
    arrive as soon as it returns."""

    def __init__(self, upstream: tuple[str, int], *, connect_timeout: float = 10.0) -> None:
        self._upstream = upstream
        self._connect_timeout = connect_timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=type(self).__name__, daemon=True).start()

    # hooks ------------------------------------------------------------------
    def admit(self) -> bool:
        """Asked for each new client; False closes it at once."""
        return True

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        return Verdict.PASS

    def from_server(self, link: Link, chunk: bytes) -> Verdict:
        return Verdict.PASS

    def keep_open(self, link: Link, *, client_side: bool) -> bool:
        """When one direction ends: True leaves both sockets open (until `close`)."""
        return False

    # plumbing ---------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.admit():
                client.close()
                continue
            try:
                server = socket.create_connection(self._upstream, timeout=self._connect_timeout)
            except OSError:  # upstream down (a restart): the client sees a reset and retries
                client.close()
                continue
            server.settimeout(None)  # an idle long-poll is not a fault
            with self._lock:
                self._sockets |= {client, server}
            link = Link(client, server)
            for client_side in (True, False):
                threading.Thread(target=self._pipe, args=(link, client_side), daemon=True).start()

    def _pipe(self, link: Link, client_side: bool) -> None:
        src, dst = (link.client, link.server) if client_side else (link.server, link.client)
        decide = self.from_client if client_side else self.from_server
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                verdict = decide(link, chunk)
                if verdict is Verdict.CLOSE:
                    break
                if verdict is Verdict.DROP:
                    continue
                dst.sendall(chunk)
                if verdict is Verdict.PASS_THEN_CLOSE:
                    break
        except OSError:
            pass
        finally:
            if not self.keep_open(link, client_side=client_side):
                self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in a pipe thread
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        self._close(*socks)
