"""A TCP forwarder between the agent and a directory that can hold the directory's
answers back on cue: how the crash test catches the agent mid-write for real.

`hold_when()` is asked before each server->client chunk is passed on (with
`hold_requests`, each client->server chunk instead: the write never reaches the
directory); once it says yes, that chunk and all later ones of that connection are
held (never delivered), and `holding` is set. Other connections pass untouched.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class HoldingProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        hold_when: Callable[[], bool],
        *,
        hold_requests: bool = False,
    ) -> None:
        self._upstream = upstream
        self._hold_when = hold_when
        self._hold_from_server = not hold_requests
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.holding = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream, timeout=10)
            self._sockets += [client, server]
            held = threading.Event()  # this connection only
            for src, dst, from_server in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, from_server, held), daemon=True
                ).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, from_server: bool, held: threading.Event
    ) -> None:
        try:
            while True:
                src.settimeout(None)
                chunk = src.recv(65536)
                if not chunk:
                    break
                if from_server is self._hold_from_server and (
                    held.is_set() or self._hold_when()
                ):
                    held.set()
                    self.holding.set()
                    continue  # swallowed: never delivered
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in a pipe thread
            except OSError:
                pass
            s.close()


class CuttingProxy:
    """A TCP forwarder between an agent and the relay that cuts the agent's result
    posts: once a client->server chunk starts with `cut_prefix`, that chunk and all
    later ones on the connection are swallowed (the relay never sees the result, the
    agent never hears back). Everything else passes."""

    def __init__(
        self, upstream: tuple[str, int], cut_prefix: bytes = b"POST /v1/agent/results"
    ) -> None:
        self._upstream = upstream
        self._cut_prefix = cut_prefix
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.cut = threading.Event()
        self.cutting = True  # False: pass result posts through too
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
            except OSError:  # the relay is down: so is the proxy's upstream
                client.close()
                continue
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        cutting = False
        try:
            while True:
                src.settimeout(None)
                chunk = src.recv(65536)
                if not chunk:
                    break
                if from_client and (
                    cutting or (self.cutting and chunk.startswith(self._cut_prefix))
                ):
                    cutting = True
                    self.cut.set()
                    continue
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            if not cutting:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
