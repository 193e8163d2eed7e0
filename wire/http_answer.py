"""Reading an HTTP answer's status line and header without the `email` package.

`http.client.HTTPResponse.begin()` hands the header block to `email.parser`, whose
FeedParser cost about 40 us of CPU per answer: 7% of the agent's CPU in a profile under
load (issue 11). `AnswerHead` is an `HTTPResponse` that reads the header lines itself
and is otherwise the standard library's: body reading (Content-Length, chunked,
until-close), the keep-alive decision and the CONNECT tunnel are untouched. It is
plugged in per connection class (`response_class`), never into `http.client` itself.

The limits are the standard library's (a line of at most 65,536 bytes, at most 100
header lines), with the same exceptions (`LineTooLong`, `HTTPException`). It is
stricter where `email.parser` was lenient, and an answer it cannot read is an
`http.client.HTTPException` (so the call fails, its connection is dropped, and nothing
is re-sent):

- a header line without a colon, or with an empty or spaced field name, is
  `MalformedHeader` (`email.parser` took it as the start of the body, so the headers
  after it were lost and the rest was read as body);
- the connection closing inside the header block is `IncompleteHeader` (the standard
  library took the header as complete);
- an obsolete folded line (leading space or tab) continues the previous field's value,
  joined with one space, as RFC 9112 section 5.2 tells a user agent to.
"""

from __future__ import annotations

import http.client
from http.client import HTTPException, HTTPMessage, LineTooLong, UnknownProtocol

MAX_LINE = 65536  # http.client._MAXLINE
MAX_HEADERS = 100  # http.client._MAXHEADERS
_END = (b"\r\n", b"\n")
_NO_BODY = frozenset({204, 304})


class MalformedHeader(HTTPException):
    """A header line that is not `name: value`."""


class IncompleteHeader(HTTPException):
    """The connection closed before the header block ended."""


def read_header(fp: object) -> HTTPMessage:
    """The header block up to its empty line, as the `HTTPMessage` that
    `http.client.parse_headers` would give for a well-formed one."""
    readline = fp.readline  # type: ignore[attr-defined]
    fields: list[list[str]] = []
    lines = 0
    while True:
        line: bytes = readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise LineTooLong("header line")
        if line in _END:
            break
        if not line:
            raise IncompleteHeader("connection closed inside the answer's header")
        lines += 1
        if lines > MAX_HEADERS:
            raise HTTPException(f"got more than {MAX_HEADERS} headers")
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[0] in " \t":
            if not fields:
                raise MalformedHeader(f"header starts with a folded line: {text[:80]!r}")
            fields[-1][1] += " " + text.strip(" \t")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise MalformedHeader(f"header line is not 'name: value': {text[:80]!r}")
        fields.append([name, value.strip(" \t")])
    message = HTTPMessage()
    for name, value in fields:
        message[name] = value
    return message


class AnswerHead(http.client.HTTPResponse):
    """`HTTPResponse` whose `begin()` reads the header with `read_header`."""

    def begin(self) -> None:
        """http.client.HTTPResponse.begin (CPython 3.11-3.13) with `read_header` in place
        of `parse_headers`; every other step is the standard library's."""
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_header(self.fp)  # a 100 Continue's header: read and dropped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise UnknownProtocol(version)
        self.headers = self.msg = read_header(self.fp)
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in _NO_BODY or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no length: the body ends when the connection does


class HTTPConnection(http.client.HTTPConnection):
    response_class = AnswerHead


class HTTPSConnection(http.client.HTTPSConnection):
    response_class = AnswerHead
