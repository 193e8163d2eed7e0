"""`writeback-agent`: init, enroll, check, run, status, keys.

The settings object is built here, once, and passed down. Every command prints
what it did in plain words and exits non-zero on failure with one line saying what
to fix; secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.config import ConfigError, Settings, load_settings
from agent.enrollment import (
    Enrollment,
    NotEnrolled,
    keyring_path,
    portal_keys_from_relay,
)
from wire.errors import KeyFileError
from wire.keyring import PortalKeyring
from wire.keys import AgentKeys

EXAMPLE = Path(__file__).resolve().parent.parent / "agent.toml.example"
DEFAULT_CONFIGS = (Path("agent.toml"), Path("/etc/writeback-agent/agent.toml"))


class CliError(Exception):
    """A problem the operator can fix; printed as one line, exit 2."""


def _config_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("WRITEBACK_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIGS:
        if candidate.exists():
            return candidate
    return DEFAULT_CONFIGS[0]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_config_path(args.config))


def _load_keys(settings: Settings) -> AgentKeys:
    try:
        return AgentKeys.load(settings.keys_dir)
    except FileNotFoundError:
        raise CliError(
            f"no keys in {settings.keys_dir}: run `writeback-agent init` first"
        ) from None


# --------------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    config = _config_path(args.config)
    data_dir = Path(args.data_dir).resolve()
    keys_dir = data_dir / "keys"
    if (keys_dir / "signing.key").exists() and not args.force:
        raise CliError(f"{keys_dir} already holds keys (use --force to replace them)")
    keys = AgentKeys.generate(kem=args.kem)
    keys.save(keys_dir)
    print(
        f"generated agent keys in {keys_dir} (signing {keys.sign_kid}, encryption {keys.kem.kid})"
    )
    if config.exists() and not args.force:
        print(f"kept existing {config}")
    else:
        text = EXAMPLE.read_text(encoding="utf-8") if EXAMPLE.exists() else ""
        text = text.replace('data_dir = "/var/lib/writeback-agent"', f'data_dir = "{data_dir}"')
        if args.relay_url:
            text = text.replace('url = "https://relay.example.com"', f'url = "{args.relay_url}"')
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(text, encoding="utf-8")
        print(
            f"wrote starter configuration {config}: edit [[directories]], "
            "then run `writeback-agent enroll`"
        )
    return 0


# --------------------------------------------------------------------------- enroll


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.transports.base import TransportError
    from agent.transports.relay import enroll

    settings = _settings(args)
    if settings.relay is None:
        raise CliError("no [relay] url in the configuration")
    keys = _load_keys(settings)
    code = args.code or os.environ.get("WRITEBACK_ENROLLMENT_CODE")
    if not code:
        raise CliError("give the one-time code with --code or WRITEBACK_ENROLLMENT_CODE")
    try:
        answer = enroll(
            settings.relay.url,
            code,
            settings.agent_name,
            keys.public().model_dump(mode="json"),
            ca_file=str(settings.relay.ca_file) if settings.relay.ca_file else None,
            allow_insecure_http=settings.relay.allow_insecure_http,
        )
    except TransportError as exc:
        raise CliError(f"enrollment failed: {exc}") from None
    enrollment = Enrollment(
        agent_id=str(answer["agent_id"]),
        tenant=str(answer["tenant"]),
        agent_group=str(answer["agent_group"]),
        relay_url=settings.relay.url,
    )
    enrollment.save(settings.enrollment_path)
    keyring = PortalKeyring(portal_keys_from_relay(answer.get("portal_keys", [])))
    keyring.save(keyring_path(settings.data_dir))
    print(
        f"enrolled as agent {enrollment.agent_id} of tenant {enrollment.tenant}, "
        f"group {enrollment.agent_group}; trusting {len(keyring.keys)} portal key(s)"
    )
    return 0


# --------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    from agent.checks import run_checks

    settings = _settings(args)
    failures = 0
    for ok, name, detail in run_checks(settings):
        mark = "ok  " if ok else "FAIL"
        print(f"[{mark}] {name}" + (f": {detail}" if detail else ""))
        failures += not ok
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import build_agent
    from agent.logging import configure_logging

    settings = _settings(args)
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    agent = build_agent(settings)

    def _on_signal(signum: int, _frame: Any) -> None:
        agent.service.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    agent.start()
    try:
        agent.service.wait()
    finally:
        agent.stop()
    return 0


# --------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    import httpx

    from agent.journal import Journal

    settings = _settings(args)
    out: dict[str, Any] = {
        "config": str(_config_path(args.config)),
        "data_dir": str(settings.data_dir),
    }
    try:
        e = Enrollment.load(settings.enrollment_path)
        out["enrollment"] = {
            "agent_id": e.agent_id,
            "tenant": e.tenant,
            "agent_group": e.agent_group,
            "relay": e.relay_url,
        }
    except NotEnrolled as exc:
        out["enrollment"] = str(exc)
    if settings.journal_path.exists():
        journal = Journal(settings.journal_path)
        out["journal"] = journal.counts()
        journal.close()
    if settings.health.enabled:
        url = f"http://{settings.health.host}:{settings.health.port}/readyz"
        try:
            response = httpx.get(url, timeout=2)
            out["running"] = True
            out["ready"] = response.status_code == 200
            out["readiness"] = response.json()
        except (httpx.HTTPError, ValueError):
            out["running"] = False
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


# --------------------------------------------------------------------------- keys


def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    keys = _load_keys(settings)
    if args.keys_command == "show":
        print(json.dumps(keys.public().model_dump(mode="json"), indent=2, sort_keys=True))
        return 0
    # rotate: new HPKE key; the previous one keeps opening queued requests for --overlap.
    from agent.enrollment import relay_transport
    from agent.transports.base import TransportError

    rotated = keys.rotate_kem(now=int(time.time()), overlap=args.overlap)
    enrollment = Enrollment.load(settings.enrollment_path)
    transport = relay_transport(settings, enrollment, keys)
    try:
        transport.update_keys(rotated.public(enrollment.agent_id).model_dump(mode="json"))
    except TransportError as exc:
        raise CliError(
            f"the relay did not take the new public key ({exc}); nothing was changed"
        ) from None
    finally:
        transport.close()
    rotated.save(settings.keys_dir)
    print(
        f"rotated encryption key: new {rotated.kem.kid}; previous {keys.kem.kid} "
        f"still opens requests for {args.overlap} s. Restart the agent to load it."
    )
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="writeback-agent", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c",
        "--config",
        help="agent.toml (default: $WRITEBACK_CONFIG, ./agent.toml, "
        "/etc/writeback-agent/agent.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="generate keys and a starter agent.toml")
    p.add_argument("--data-dir", default="/var/lib/writeback-agent")
    p.add_argument("--relay-url")
    p.add_argument("--kem", choices=["x25519", "mlkem768-x25519"], default="x25519")
    p.add_argument("--force", action="store_true", help="replace existing keys and configuration")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("enroll", help="register this agent with the relay using a one-time code")
    p.add_argument("--code", help="one-time enrollment code (or WRITEBACK_ENROLLMENT_CODE)")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("check", help="verify configuration, keys, relay and directories")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run the agent in the foreground")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="enrollment, journal counts and whether the agent is running")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("keys", help="show or rotate this agent's keys")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("show", help="print the public keys")
    rotate = keys_sub.add_parser(
        "rotate", help="new encryption key, with an overlap for queued requests"
    )
    rotate.add_argument(
        "--overlap", type=int, default=86400, help="seconds the old key still opens requests"
    )
    p.set_defaults(func=cmd_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agent.logging import configure_logging

    # Before anything can log: structlog's defaults would print unredacted to stdout.
    configure_logging(level="warning")
    try:
        return int(args.func(args))
    except (CliError, ConfigError, NotEnrolled, KeyFileError) as exc:
        print(f"writeback-agent {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
