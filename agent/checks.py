"""`writeback-agent check`: a checklist an operator can read top to bottom.

Each line says what was verified and, when it fails, what to do. The order follows
the path of a request: configuration -> keys -> enrollment -> relay -> directories.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator
from pathlib import Path

from agent.config import Settings
from agent.enrollment import (
    Enrollment,
    NotEnrolled,
    load_keyring,
    relay_transport,
    relay_url,
    trusted_files,
)
from agent.journal_probe import UnusableJournal, journal_counts
from agent.localfiles import key_hint, untrusted_reason, unusable_data_dir
from connectors.base import DirectoryError, make_connector
from wire.errors import KeyFileError
from wire.keys import AgentKeys

Check = tuple[bool, str, str]


def run_checks(settings: Settings, config: Path | None = None) -> Iterator[Check]:
    """The checklist; `config` is the agent.toml it came from (checked like a key file:
    whoever can change it chooses the relay, the CA and the data directory)."""
    yield (
        True,
        "configuration",
        f"{len(settings.directories)} directory(ies), {settings.workers} worker(s)",
    )
    if not settings.directories:
        yield (
            False,
            "directories",
            "no [[directories]] configured: `run` refuses to start; add one "
            "(`writeback-agent config example`)",
        )

    unusable = unusable_data_dir(settings.data_dir)
    if unusable is not None:
        yield False, "data directory", f"{unusable} (`run` refuses to start)"
        return  # every later line would be the same permission error
    trust = ([config] if config is not None else []) + trusted_files(settings)
    untrusted = [r for r in (untrusted_reason(p) for p in trust if p.exists()) if r]
    for reason in untrusted:
        yield False, "file permissions", f"{reason} (`run` refuses to start)"

    keys: AgentKeys | None = None
    try:
        keys = AgentKeys.load(settings.keys_dir)
        mode = stat.S_IMODE((settings.keys_dir / "signing.key").stat().st_mode)
        yield True, "agent keys", f"{keys.sign_kid} / {keys.kem.kid} (mode {mode:o})"
    except (OSError, KeyFileError) as exc:
        yield False, "agent keys", key_hint(str(exc), settings.keys_dir)

    yield _check_journal(settings)

    enrollment: Enrollment | None = None
    try:
        enrollment = Enrollment.load(settings.enrollment_path)
        keyring = load_keyring(settings.data_dir)
        yield (
            True,
            "enrollment",
            f"agent {enrollment.agent_id}, {len(keyring.keys)} portal key(s) trusted",
        )
    except (NotEnrolled, KeyFileError) as exc:
        yield False, "enrollment", str(exc)

    if enrollment is not None and keys is not None:
        yield _check_relay(settings, enrollment, keys)
    elif settings.relay is not None:
        yield _reach_relay(settings)

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


def _check_journal(settings: Settings) -> Check:
    """The journal `run` will open: usable, or the same refusal `run` gives."""
    try:
        counts = journal_counts(settings.journal_path)
    except UnusableJournal as exc:
        return False, "journal", f"{exc} (`run` refuses to start)"
    if counts is None:
        return True, "journal", f"{settings.journal_path}: created at the first start"
    return True, "journal", f"{settings.journal_path}: {sum(counts.values())} request(s)"


def _check_relay(settings: Settings, enrollment: Enrollment, keys: AgentKeys) -> Check:
    from agent.transports.base import TransportError

    url = relay_url(settings, enrollment)
    moved = f" (enrolled at {enrollment.relay_url})" if url != enrollment.relay_url else ""
    transport = relay_transport(settings, enrollment, keys, timeout=10)
    try:
        portal_keys = transport.portal_keys()
        return (
            True,
            "relay",
            f"{url} accepts this agent ({len(portal_keys)} portal key(s)){moved}",
        )
    except TransportError as exc:
        return False, "relay", f"{url}{moved}: {exc}"
    finally:
        transport.close()


def _reach_relay(settings: Settings) -> Check:
    """Not enrolled yet: can the relay at least be reached (TLS validated)?"""
    import httpx

    relay = settings.relay
    if relay is None:
        return False, "relay", "no [relay] url configured"
    verify: str | bool = str(relay.ca_file) if relay.ca_file else True
    try:
        with httpx.Client(verify=verify, timeout=10) as client:
            response = client.get(f"{relay.url}/healthz")
        return (
            response.status_code < 500,
            "relay",
            f"{relay.url} answers (HTTP {response.status_code}); enroll next",
        )
    except httpx.HTTPError as exc:
        return False, "relay", f"{relay.url} is unreachable: {exc or type(exc).__name__}"
