"""A TCP forwarder in front of slapd's plain LDAP port that records what the client
sent and can cut the connection right after a given server answer.

Over plain LDAP (the tests that use it) it sees the protocol in clear: it can prove
that no byte (so no bind, no password) reached the server, and it can inject a real
fault between two operations, e.g. kill the connection the moment slapd has answered
the Password Modify exop and refuse the reconnect a few times.
"""

from __future__ import annotations

import socket
import threading

EXTENDED_RESPONSE = 0x78  # [APPLICATION 24], constructed


def protocol_op(chunk: bytes) -> int | None:
    """The protocolOp tag of the LDAPMessage at the start of `chunk`, if parseable."""
    if len(chunk) < 2 or chunk[0] != 0x30:
        return None
    pos = 2 + (chunk[1] & 0x7F if chunk[1] & 0x80 else 0)  # skip the SEQUENCE length
    if pos + 2 > len(chunk) or chunk[pos] != 0x02:  # messageID INTEGER
        return None
    pos += 2 + chunk[pos + 1]
    return chunk[pos] if pos < len(chunk) else None


class LdapProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.connections = 0
        self.sent = bytearray()  # everything any client sent
        self.cut_after: int | None = None  # a protocolOp tag: cut after passing it on
        self.refuse_next = 0  # connections to close at once after a cut
        self.cuts = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                refuse = self.cuts > 0 and self.refuse_next > 0
                if refuse:
                    self.refuse_next -= 1
            if refuse:
                client.close()
                continue
            server = socket.create_connection(self._upstream, timeout=10)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if not from_server:
                    with self._lock:
                        self.sent += chunk
                dst.sendall(chunk)
                if from_server and self.cut_after is not None and (
                    protocol_op(chunk) == self.cut_after
                ):
                    with self._lock:
                        self.cut_after = None
                        self.cuts += 1
                    break
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
        self._listener.close()
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
