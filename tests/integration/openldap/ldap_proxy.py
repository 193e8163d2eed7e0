"""A TCP forwarder in front of slapd's plain LDAP port that records what the client
sent and can cut the connection right after a given server answer.

Over plain LDAP (the tests that use it) it sees the protocol in clear: it can prove
that no byte (so no bind, no password) reached the server, and it can inject a real
fault between two operations, e.g. kill the connection the moment slapd has answered
the Password Modify exop and refuse the reconnect a few times.
"""

from __future__ import annotations

import threading

from tests.servers.tcp_proxy import Link, TcpProxy, Verdict

EXTENDED_RESPONSE = 0x78  # [APPLICATION 24], constructed
EXTENDED_REQUEST = 0x77  # [APPLICATION 23]
MODIFY_REQUEST = 0x66  # [APPLICATION 6]


def protocol_op(chunk: bytes) -> int | None:
    """The protocolOp tag of the LDAPMessage at the start of `chunk`, if parseable."""
    if len(chunk) < 2 or chunk[0] != 0x30:
        return None
    pos = 2 + (chunk[1] & 0x7F if chunk[1] & 0x80 else 0)  # skip the SEQUENCE length
    if pos + 2 > len(chunk) or chunk[pos] != 0x02:  # messageID INTEGER
        return None
    pos += 2 + chunk[pos + 1]
    return chunk[pos] if pos < len(chunk) else None


def _element_size(data: bytes, pos: int) -> int:
    """Bytes taken by the BER element starting at `pos` (tag, length, contents)."""
    first = data[pos + 1]
    if not first & 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(data[pos + 2 : pos + 2 + count], "big")


class LdapProxy(TcpProxy):
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.connections = 0
        self.sent = bytearray()  # everything any client sent
        self.cut_after: int | None = None  # a protocolOp tag: cut after passing it on
        self.refuse_next = 0  # connections to close at once after a cut
        self.cuts = 0
        self._counts = threading.Lock()
        super().__init__(upstream)
        self.url = f"ldap://127.0.0.1:{self.port}"

    def admit(self) -> bool:
        with self._counts:
            self.connections += 1
            refuse = self.cuts > 0 and self.refuse_next > 0
            if refuse:
                self.refuse_next -= 1
        return not refuse

    def requests(self) -> list[int]:
        """The protocolOp tag of every LDAPMessage clients sent so far, in order (one
        client at a time: the stream is what they sent, back to back)."""
        with self._counts:
            data = bytes(self.sent)
        tags: list[int] = []
        pos = 0
        while pos + 2 <= len(data):
            size = _element_size(data, pos)
            tag = protocol_op(data[pos : pos + size])
            if tag is not None:
                tags.append(tag)
            pos += size
        return tags

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        with self._counts:
            self.sent += chunk
        return Verdict.PASS

    def from_server(self, link: Link, chunk: bytes) -> Verdict:
        if self.cut_after is not None and protocol_op(chunk) == self.cut_after:
            with self._counts:
                self.cut_after = None
                self.cuts += 1
            return Verdict.PASS_THEN_CLOSE
        return Verdict.PASS
