"""The agent's enrolled identity: who it is at the relay and which portal keys it trusts.

Written by `writeback-agent enroll` into the data directory (files 0600), read by
`run`. The relay URL saved here is where the agent enrolled; `[relay] url` in the
configuration, when set, is the one used (`relay_url`). Trust model: the portal's
public signing keys arrive from the relay at enrollment (the moment the operator
vouches for, with a one-time code) and are pinned in portal_keys.json; the relay
cannot forge requests without a portal private key. Rotation fetches keys again from
the relay, so a compromised relay could add a key then: operators who want to exclude
that pin keys by hand (docs/security.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.transports.relay import RelayTransport
from wire.errors import KeyFileError
from wire.files import write_private
from wire.keyring import PortalKeyring, TrustedPortalKey
from wire.keys import KEM_FILE, KEM_PREVIOUS_FILE, SIGNING_FILE, AgentKeys


class NotEnrolled(Exception):
    """No enrollment record: run `writeback-agent enroll --code ...` first."""


@dataclass(frozen=True)
class Enrollment:
    agent_id: str
    tenant: str
    agent_group: str
    relay_url: str

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(self.__dict__, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Enrollment:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotEnrolled(
                f"{path} not found: run `writeback-agent enroll` first"
            ) from None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not JSON"
            raise NotEnrolled(f"{path} is unreadable ({reason}): {_REENROLL}") from None
        fields = ("agent_id", "tenant", "agent_group", "relay_url")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in fields):
            raise NotEnrolled(f"{path} is not an enrollment record: {_REENROLL}")
        return cls(**{k: data[k] for k in fields})


_REENROLL = "move it away and enroll again with a new code"


def portal_keys_from_relay(items: list[dict[str, Any]]) -> list[TrustedPortalKey]:
    """The relay's {kid, public_key, not_before, not_after} as keyring entries
    (the relay speaks float seconds; the keyring whole seconds)."""

    def whole(value: Any) -> int | None:
        return None if value is None else int(value)

    return [
        TrustedPortalKey(
            kid=str(item["kid"]),
            key=str(item["public_key"]),
            not_before=whole(item.get("not_before")),
            not_after=whole(item.get("not_after")),
        )
        for item in items
    ]


def keyring_path(data_dir: Path) -> Path:
    return data_dir / "portal_keys.json"


def trusted_files(settings: Settings) -> list[Path]:
    """The keys, trust anchors and their directories that nobody but this user (or
    root) may be able to change: `run` refuses to start on one, `check` names it."""
    paths = [settings.data_dir, settings.keys_dir, settings.enrollment_path]
    paths += [settings.keys_dir / name for name in (SIGNING_FILE, KEM_FILE, KEM_PREVIOUS_FILE)]
    paths.append(keyring_path(settings.data_dir))
    if settings.relay is not None and settings.relay.ca_file is not None:
        paths.append(settings.relay.ca_file)
    return paths + [d.ca_file for d in settings.directories if d.ca_file is not None]


def load_keyring(data_dir: Path) -> PortalKeyring:
    path = keyring_path(data_dir)
    if not path.exists():
        raise NotEnrolled(f"{path} not found: run `writeback-agent enroll` first")
    try:
        return PortalKeyring.load(path)
    except (KeyFileError, ValueError):
        raise NotEnrolled(
            f"{path} is not a portal keyring: {_REENROLL}, or restore it"
        ) from None


def relay_url(settings: Settings, enrollment: Enrollment) -> str:
    """The relay this agent talks to: `[relay] url` when configured (the operator's
    word wins, e.g. after the relay moved to a new name), else the enrolled one."""
    return settings.relay.url if settings.relay is not None else enrollment.relay_url


def relay_transport(
    settings: Settings, enrollment: Enrollment, keys: AgentKeys, *, timeout: float | None = None
) -> RelayTransport:
    """The relay client for this enrolled agent: its URL (`relay_url`) and TLS rules
    from the settings, its identity from the enrollment, every call signed with its key."""
    relay = settings.relay
    return RelayTransport(
        relay_url(settings, enrollment),
        enrollment.agent_id,
        keys.signing,
        ca_file=str(relay.ca_file) if relay and relay.ca_file else None,
        allow_insecure_http=bool(relay and relay.allow_insecure_http),
        timeout=timeout if timeout is not None else (relay.timeout_seconds if relay else 40.0),
    )
