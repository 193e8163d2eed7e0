"""Directory connections share one SSLContext per CA file (connectors/_tls.py), and a
CA file that changes on disk is read again by the next connection, as ldap3's own
per-connection context would have read it. On the session's real slapd."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from connectors._ldap import close_quietly, open_connection
from connectors.base import DirectoryUnavailable, WriteNotSent
from tests.servers.certs import make_ca
from tests.servers.slapd import SlapdEnv

pytestmark = pytest.mark.slapd


def test_connections_share_one_context_and_still_validate(
    slapd_env: SlapdEnv, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    shutil.copy(slapd_env.settings.ca_file, ca)  # type: ignore[arg-type]
    settings = slapd_env.settings.model_copy(update={"ca_file": ca})
    first = open_connection(settings, context="service_bind")
    second = open_connection(settings, context="service_bind")
    try:
        assert first.socket.context is second.socket.context
        assert first.socket.getpeercert()  # validated: the peer's certificate is known
    finally:
        close_quietly(first)
        close_quietly(second)

    # Another CA's certificate in the same file: the next connection is refused ...
    _, _, other = make_ca(tmp_path / "other")
    shutil.copy(other, ca)
    stamp = ca.stat()
    os.utime(ca, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    with pytest.raises((DirectoryUnavailable, WriteNotSent)):
        close_quietly(open_connection(settings, context="service_bind"))

    # ... and the right CA back: accepted again, without a restart.
    shutil.copy(slapd_env.settings.ca_file, ca)  # type: ignore[arg-type]
    os.utime(ca, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 2_000_000_000))
    close_quietly(open_connection(settings, context="service_bind"))
