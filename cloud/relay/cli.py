"""`writeback-relay`: run the relay, and admin commands on the same database.

    writeback-relay serve --db relay.sqlite3 --host 127.0.0.1 --port 8080 --admin-token-file F
    writeback-relay serve --db postgresql://relay@db.internal/relay ...   # several replicas
    writeback-relay tenant add TENANT                      # prints the portal API token once
    writeback-relay enrollment-code --tenant T --group G [--ttl 3600]   # prints a one-time code
    writeback-relay portal-key add --tenant T --kid KID --public-key B64URL
                                   [--not-before WHEN] [--not-after WHEN]
    writeback-relay agent remove AGENT_ID

Admin commands open the database directly (`--db`, default $WRITEBACK_RELAY_DB, or
$WRITEBACK_RELAY_DATABASE_URL for PostgreSQL), which is safe while `serve` runs (SQLite
WAL; PostgreSQL). Keep a PostgreSQL password out of flags: PGPASSFILE or the env. The
same operations exist over HTTP under /v1/admin with the admin token. Settings: flags
over WRITEBACK_RELAY_* environment.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import SecretStr

from cloud.relay import admin as ops
from cloud.relay.backends import DatabaseUnavailable, open_store
from cloud.relay.settings import RelaySettings
from cloud.relay.store import DuplicateError, NotFoundError, PortalKey

if TYPE_CHECKING:
    from cloud.relay.deps import RelayContext

_TUNABLES = (
    "presence_timeout",
    "lease_timeout",
    "max_body_bytes",
    "max_request_ttl",
    "poll_interval",
    "retention",
    "prune_interval",
    "max_result_wait",
    "max_lease_wait",
    "auth_skew",
    "graceful_shutdown",
)


def _when(text: str) -> float:
    """Unix seconds or an ISO 8601 time with offset (2026-01-31T00:00:00+00:00)."""
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset") from None
        return moment.timestamp()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="writeback-relay", description=__doc__.split("\n")[0])
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
    serve.add_argument("--log-level", default="info")

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


def _settings(args: argparse.Namespace) -> RelaySettings:
    overrides: dict[str, Any] = {}
    for name in ("db", "host", "port", *_TUNABLES):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return RelaySettings(**overrides)


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _serve(args: argparse.Namespace, settings: RelaySettings) -> int:
    # Imported here so the admin subcommands start without the web stack.
    import uvicorn

    from cloud.relay.app import create_app

    settings = settings.model_copy(update={"admin_token": _admin_token(args.admin_token_file)})
    _configure_logging(args.log_level)
    if settings.admin_token is None:
        structlog.get_logger("writeback.relay").warning("admin_api.disabled")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown),
        server_header=False,
    )
    ctx: RelayContext = app.state.relay

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            ctx.stopping = True  # a plain flag: safe to set from a signal handler
            super().handle_exit(sig, frame)

    Server(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    if args.command != "serve":
        # stdout carries what admin commands print (a token, a code): logs go to stderr.
        _configure_logging("warning")
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
