"""`writeback-agent check`: a checklist an operator can read top to bottom.

Each line says what was verified and, when it fails, what to do. The order follows
the path of a request: configuration -> keys -> enrollment -> relay -> directories.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator

from agent.config import Settings
from agent.enrollment import Enrollment, NotEnrolled, load_keyring, relay_transport
from connectors.base import DirectoryError, make_connector
from wire.errors import KeyFileError
from wire.keys import AgentKeys

Check = tuple[bool, str, str]


def run_checks(settings: Settings) -> Iterator[Check]:
    yield (
        True,
        "configuration",
        f"{len(settings.directories)} directory(ies), {settings.workers} worker(s)",
    )
    if not settings.directories:
        yield False, "directories", "no [[directories]] configured"

    keys: AgentKeys | None = None
    try:
        keys = AgentKeys.load(settings.keys_dir)
        mode = stat.S_IMODE((settings.keys_dir / "signing.key").stat().st_mode)
        yield True, "agent keys", f"{keys.sign_kid} / {keys.kem.kid} (mode {mode:o})"
    except (OSError, KeyFileError) as exc:
        yield False, "agent keys", f"{exc} (run `writeback-agent init`)"

    enrollment: Enrollment | None = None
    try:
        enrollment = Enrollment.load(settings.enrollment_path)
        keyring = load_keyring(settings.data_dir)
        yield (
            True,
            "enrollment",
            f"agent {enrollment.agent_id}, {len(keyring.keys)} portal key(s) trusted",
        )
    except NotEnrolled as exc:
        yield False, "enrollment", str(exc)

    if enrollment is not None and keys is not None:
        yield _check_relay(settings, enrollment, keys)

    for directory in settings.directories:
        try:
            connector = make_connector(directory)
        except DirectoryError as exc:
            yield False, f"directory {directory.name}", exc.detail
            continue
        try:
            report = connector.check()
            for item in report.items:
                yield item.ok, f"directory {directory.name}: {item.name}", item.detail
        except DirectoryError as exc:
            yield False, f"directory {directory.name}", f"{exc.status.value}: {exc.detail}"
        finally:
            with contextlib.suppress(DirectoryError):
                connector.close()


def _check_relay(settings: Settings, enrollment: Enrollment, keys: AgentKeys) -> Check:
    from agent.transports.base import TransportError

    transport = relay_transport(settings, enrollment, keys, timeout=10)
    try:
        portal_keys = transport.portal_keys()
        return (
            True,
            "relay",
            f"{enrollment.relay_url} accepts this agent ({len(portal_keys)} portal key(s))",
        )
    except TransportError as exc:
        return False, "relay", f"{enrollment.relay_url}: {exc}"
    finally:
        transport.close()
