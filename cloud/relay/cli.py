"""`writeback-relay`: run the relay, and admin commands on the same database.

    writeback-relay serve --db relay.sqlite3 --host 127.0.0.1 --port 8080 --admin-token-file F
    writeback-relay serve --db postgresql://relay@db.internal/relay ...   # several replicas
    writeback-relay tenant add TENANT                      # prints the portal API token once
    writeback-relay enrollment-code --tenant T --group G [--ttl 3600]   # prints a one-time code
    writeback-relay portal-key add --tenant T --kid KID --public-key B64URL
                                   [--not-before WHEN] [--not-after WHEN]
    writeback-relay agent remove AGENT_ID
    writeback-relay agent list --tenant T [--group G] [--json]

Admin commands open the database directly (`--db`, default $WRITEBACK_RELAY_DB, or
$WRITEBACK_RELAY_DATABASE_URL for PostgreSQL), which is safe while `serve` runs (SQLite
WAL; PostgreSQL). Keep a PostgreSQL password out of flags: PGPASSFILE or the env. The
same operations exist over HTTP under /v1/admin with the admin token. Settings: flags
over WRITEBACK_RELAY_* environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import SecretStr

from cloud.relay import admin as ops
from cloud.relay.backends import DatabaseUnavailable, open_store
from cloud.relay.models import AgentHealth
from cloud.relay.ops import agent_health
from cloud.relay.settings import RelayServerSettings
from cloud.relay.store import DuplicateError, NotFoundError, PortalKey

if TYPE_CHECKING:
    pass

_TUNABLES = (
    "presence_timeout",
    "lease_timeout",
    "late_answer_grace",
    "max_body_bytes",
    "max_request_ttl",
    "poll_interval",
    "retention",
    "prune_interval",
    "max_result_wait",
    "max_lease_wait",
    "auth_skew",
    "graceful_shutdown",
    "header_timeout",
    "body_timeout",
    "keep_alive_timeout",
    "cache_ttl",
)
_COUNTS = ("max_long_polls_per_tenant", "limit_concurrency")
_RATES = ("submit_rate", "long_poll_rate", "enroll_rate_per_client", "enroll_rate_total")


def _when(text: str) -> float:
    """Unix seconds or an ISO 8601 time with offset (2026-01-31T00:00:00+00:00)."""
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset") from None
        return moment.timestamp()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("writeback-agent")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="writeback-relay", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # str, not Path: Path() would fold the // of a postgresql:// URL.
    parser.add_argument(
        "--db", help="SQLite file or postgresql:// URL (default $WRITEBACK_RELAY_DB)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the relay HTTP API")
    serve.add_argument("--db", default=argparse.SUPPRESS)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--admin-token-file",
        type=Path,
        help="file holding the admin API token (default "
        "$CREDENTIALS_DIRECTORY/admin-token; none: admin API off)",
    )
    for name in _TUNABLES:
        serve.add_argument("--" + name.replace("_", "-"), type=float)
    for name in _COUNTS:
        serve.add_argument("--" + name.replace("_", "-"), type=int)
    for name in _RATES:
        serve.add_argument("--" + name.replace("_", "-"), help="e.g. 100/second, 10/minute")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="auto: JSON unless stderr is a terminal",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every HTTP request (uvicorn's access log, through our log setup)",
    )

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    add = tenant.add_parser("add", help="create a tenant; prints its portal API token once")
    add.add_argument("tenant")
    add.add_argument("--db", default=argparse.SUPPRESS)

    code = sub.add_parser("enrollment-code", help="print a one-time agent enrollment code")
    code.add_argument("--tenant", required=True)
    code.add_argument("--group", required=True)
    code.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    code.add_argument("--db", default=argparse.SUPPRESS)

    keys = sub.add_parser("portal-key", help="portal signing keys").add_subparsers(
        dest="action", required=True
    )
    kadd = keys.add_parser("add", help="pin a portal Ed25519 public key for a tenant")
    kadd.add_argument("--tenant", required=True)
    kadd.add_argument("--kid", required=True)
    kadd.add_argument("--public-key", required=True, help="base64url raw Ed25519 public key")
    kadd.add_argument("--not-before", type=_when)
    kadd.add_argument("--not-after", type=_when)
    kadd.add_argument("--db", default=argparse.SUPPRESS)

    agents = sub.add_parser("agent", help="manage agents").add_subparsers(
        dest="action", required=True
    )
    remove = agents.add_parser("remove", help="revoke an agent (it can no longer authenticate)")
    remove.add_argument("agent_id")
    remove.add_argument("--db", default=argparse.SUPPRESS)
    listing = agents.add_parser(
        "list", help="agents with version, last heartbeat, online state and directory health"
    )
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--group")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.add_argument("--db", default=argparse.SUPPRESS)
    return parser


def _admin_token(path: Path | None) -> SecretStr | None:
    if path is None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        candidate = Path(creds) / "admin-token" if creds else None
        if candidate is None or not candidate.exists():
            return None
        path = candidate
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise SystemExit(f"writeback-relay: admin token in {path} is shorter than 16 characters")
    return SecretStr(token)


def _settings(args: argparse.Namespace) -> RelayServerSettings:
    overrides: dict[str, Any] = {}
    for name in ("db", "host", "port", *_TUNABLES, *_COUNTS, *_RATES):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return RelayServerSettings(**overrides)


def _serve(args: argparse.Namespace, settings: RelayServerSettings) -> int:
    # Imported here so the admin subcommands start without the web stack.
    try:
        from cloud.relay.app import create_app
        from cloud.relay.logs import configure_logging
        from cloud.relay.server import serve
    except ImportError as exc:
        print(
            f"writeback-relay serve: {exc.name or 'the web stack'} is not installed: "
            "pip install 'writeback-agent[cloud]'",
            file=sys.stderr,
        )
        return 2

    settings = settings.model_copy(update={"admin_token": _admin_token(args.admin_token_file)})
    configure_logging(args.log_level, args.log_format)
    if settings.admin_token is None:
        structlog.get_logger("writeback.relay").warning("admin_api.disabled")
    serve(create_app(settings), settings, args.log_level, access_log=args.access_log)
    return 0


def _agent_table(agents: list[AgentHealth], *, as_json: bool, now: float) -> str:
    if as_json:
        return json.dumps([a.model_dump(mode="json") for a in agents], indent=2)
    if not agents:
        return "no agents"

    def ago(moment: float | None) -> str:
        return "never" if moment is None else f"{max(0, now - moment):.0f}s ago"

    rows = [
        ("AGENT", "NAME", "GROUP", "VERSION", "ONLINE", "LAST SEEN", "HEARTBEAT", "DIRECTORIES")
    ]
    for a in agents:
        dirs = ", ".join(f"{k}={'up' if v else 'down'}" for k, v in sorted(a.directories.items()))
        rows.append(
            (
                a.agent_id,
                a.name,
                a.agent_group,
                a.version or "-",
                "yes" if a.online else "no",
                ago(a.last_seen),
                ago(a.last_heartbeat),
                dirs or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    if args.command != "serve":
        # stdout carries what admin commands print (a token, a code): logs go to stderr.
        from cloud.relay.logs import configure_logging

        configure_logging("warning", stream=sys.stderr)
    try:
        if args.command == "serve":
            return _serve(args, settings)
        store = open_store(settings)
    except DatabaseUnavailable as exc:
        print(f"writeback-relay: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    try:
        if args.command == "tenant":
            print(ops.create_tenant(store, args.tenant, now))
        elif args.command == "enrollment-code":
            code, _ = ops.create_enrollment_code(store, args.tenant, args.group, args.ttl, now)
            print(code)
        elif args.command == "portal-key":
            key = PortalKey(args.kid, args.public_key, args.not_before, args.not_after)
            ops.add_portal_key(store, args.tenant, key, now)
            print(f"added portal key {args.kid} for tenant {args.tenant}")
        elif args.command == "agent" and args.action == "list":
            since = now - settings.presence_timeout
            print(
                _agent_table(
                    agent_health(store, args.tenant, args.group, online_since=since),
                    as_json=args.json,
                    now=now,
                )
            )
        elif args.command == "agent":
            store.remove_agent(args.agent_id, now)
            print(f"removed agent {args.agent_id}")
    except (DuplicateError, NotFoundError, ValueError) as exc:
        print(f"writeback-relay: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
