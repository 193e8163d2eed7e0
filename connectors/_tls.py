"""TLS for directory connections: one SSLContext per CA source, shared by every
connection, instead of ldap3's one per connection.

ldap3's `Tls.wrap_socket` builds a new SSLContext for each connection and loads the
CAs into it. Without a `ca_file` that is the system's whole CA bundle, about 0.8 MiB
per context; the agent keeps up to one connection per worker (16 by default) and
reopens them when a DC restarts. `SharedTls` builds the context exactly as ldap3 does for an
explicit protocol version (verify_mode from `validate`, check_hostname off) and checks
the host name as ldap3 does, after the handshake (`ldap3.core.tls.check_hostname`).

A changed CA file (or system bundle) is picked up by the next connection: the context
is rebuilt when the file's size or modification time changes, as a fresh ldap3
context would have read it.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import ldap3
from ldap3.core.tls import check_hostname


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st is not None else None


class SharedTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 ships no type information
    """ldap3.Tls(validate, version, ca_certs_file) with one shared context."""

    def __init__(self, *, validate: int, version: int, ca_certs_file: str | None) -> None:
        super().__init__(validate=validate, version=version, ca_certs_file=ca_certs_file)
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._source: object = None

    def _ca_source(self) -> object:
        if self.ca_certs_file:
            return ("file", _stamp(self.ca_certs_file))
        paths = ssl.get_default_verify_paths()
        return ("system", _stamp(paths.cafile), _stamp(paths.capath))

    def context(self) -> ssl.SSLContext:
        source = self._ca_source()
        with self._lock:
            if self._context is None or source != self._source:
                context = ssl.SSLContext(self.version)
                if self.ca_certs_file:
                    context.load_verify_locations(self.ca_certs_file)
                elif self.validate != ssl.CERT_NONE:
                    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
                context.check_hostname = False  # checked below, as ldap3 does
                context.verify_mode = self.validate
                self._context, self._source = context, source
            return self._context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        wrapped = self.context().wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake
        )
        if do_handshake and self.validate in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL):
            check_hostname(wrapped, connection.server.host, self.valid_names)
        connection.socket = wrapped


_SHARED: dict[str | None, SharedTls] = {}
_SHARED_LOCK = threading.Lock()


def shared_tls(ca_file: str | None) -> SharedTls:
    """The process's SharedTls for this CA file (None: the system's CAs), validating
    certificates (CERT_REQUIRED) over TLS 1.2+ (PROTOCOL_TLS_CLIENT)."""
    with _SHARED_LOCK:
        tls = _SHARED.get(ca_file)
        if tls is None:
            tls = _SHARED[ca_file] = SharedTls(
                validate=ssl.CERT_REQUIRED,
                version=ssl.PROTOCOL_TLS_CLIENT,
                ca_certs_file=ca_file,
            )
        return tls
