"""`Connections`: keep-alive HTTP/1.1 to one relay over the standard library's
`http.client`, for both clients of the relay: the agent's `RelayTransport` and the
portal's `PortalClient` (here because neither side may import the other; standard
library only, like the rest of wire).

Why not httpx: a relay call cost the client ~0.5 ms of CPU in httpx (request building,
URL merging, cookie extraction, h11) against ~0.1 ms in `http.client` on one persistent
connection (bench/bench_http_client.py), and the agent makes ~2.5 calls per reset.

What it keeps from the httpx client it replaces:

- TLS verified by default (an `ssl.SSLContext` with hostname checking; `ca_file` or
  `verify=False` only when asked); https through an `https_proxy` from the environment
  (CONNECT tunnel, honouring `no_proxy`), as httpx did.
- Keep-alive, with a stale check before reuse: an idle connection whose socket is
  readable (the relay closed it, or sent something unasked) is dropped and a new one
  opened *before* anything is sent. Nothing is ever re-sent: once a request may have
  left, any fault is raised (a permit or a result post must not reach the relay twice
  unbeknown to us), as httpcore does.
- A timeout per call (connect, and each read or write), for long-polls.
- No redirect is followed; no cookie is kept.
- The answer's header is read by `wire.http_answer` (the standard library's limits,
  without its costly `email` parser); its body by `http.client`.
- Thread-safe: each call takes an idle connection (or opens one) and puts it back
  only after the whole answer was read and the relay did not ask to close.

Faults are raised as they come (OSError, TimeoutError, http.client.HTTPException);
the caller translates them once.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

from wire.http_answer import HTTPConnection, HTTPSConnection

# What a call may raise from here: the caller maps these to its own classes.
FAULTS = (OSError, http.client.HTTPException)
# Characters a path segment may hold unquoted (RFC 3986 pchar, less the unreserved
# ones `quote` keeps anyway): /v1/requests/results:wait is sent as written.
PATH_SAFE = "/:@!$&'()*+,;="
# The largest answer read: a relay's biggest (a batch of 16 leases of 64 KiB envelopes)
# is about 1.5 MiB; a broken or hostile relay must not make a client buffer gigabytes.
MAX_ANSWER_BYTES = 16 * 2**20


class AnswerTooLarge(http.client.HTTPException):
    """The relay's answer is over the client's limit (read no further; connection closed)."""


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer (the body is always read in full)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """The TLS rules: system CAs and hostname checks by default, `ca_file` instead of
    the system CAs, no verification only with verify=False."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=ca_file)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _stale(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is unusable when its socket is readable: EOF (the
    relay closed it) or bytes nobody asked for."""
    sock = conn.sock
    if sock is None:
        return False  # closed cleanly (Connection: close): opens anew on the next call
    try:
        if hasattr(select, "poll"):  # any fd number (select() stops at 1023)
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)  # Windows
    except (OSError, ValueError):
        return True
    return bool(readable)


class Connections:
    """Keep-alive connections to the origin of `base_url` (its path is a prefix)."""

    def __init__(
        self,
        base_url: str,
        *,
        context: ssl.SSLContext | None,
        headers: dict[str, str],
        max_idle: int = 4,
        max_answer: int = MAX_ANSWER_BYTES,
    ) -> None:
        parts = urlsplit(base_url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self.prefix = parts.path.rstrip("/")
        self._context = context if self._tls else None
        self._headers = headers
        self._max_idle = max_idle
        self._max_answer = max_answer
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._proxy = self._proxy_for() if self._tls else None

    def target(self, path: str, params: dict[str, str] | None = None) -> str:
        """The request target of `path` (under the base URL's path) with its query."""
        query = "?" + urlencode(params) if params else ""
        return self.prefix + quote(path, safe=PATH_SAFE) + query

    def _proxy_for(self) -> tuple[str, int] | None:
        proxy = getproxies().get("https")
        if not proxy or proxy_bypass(self._host):
            return None
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return (parts.hostname or "", parts.port or 80) if parts.hostname else None

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        if not self._tls:
            return HTTPConnection(self._host, self._port, timeout=timeout)
        if self._proxy is None:
            return HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        conn = HTTPSConnection(
            self._proxy[0], self._proxy[1], timeout=timeout, context=self._context
        )
        conn.set_tunnel(self._host, self._port)
        return conn

    def _take(self, timeout: float) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._open(timeout)
            if not _stale(conn):
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def request(
        self,
        method: str,
        path_with_query: str,
        *,
        body: bytes = b"",
        headers: dict[str, str],
        timeout: float,
    ) -> Answer:
        """Send one request on a fresh or checked idle connection and read the whole
        answer. Raises FAULTS; the connection is then closed, and nothing re-sent."""
        conn = self._take(timeout)
        try:
            conn.putrequest(method, path_with_query, skip_accept_encoding=True)
            for name, value in self._headers.items():
                conn.putheader(name, value)
            for name, value in headers.items():
                conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read(self._max_answer + 1)
            if len(data) > self._max_answer:
                raise AnswerTooLarge(f"answer over {self._max_answer} bytes")
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Answer(response.status, response.headers, data)

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its call ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

