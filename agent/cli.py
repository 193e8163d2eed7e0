"""`writeback-agent`: init, enroll, check, run, status, keys, config.

The settings object is built here, once, and passed down. Every command prints
what it did in plain words. Exit status: 0 done; 1 a check failed (`check`) or an
unexpected error; 2 a configuration or usage error, printed as one line naming the
file or key and what to do (systemd's RestartPreventExitStatus=2 stops restarting
on those). A traceback only with --debug. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from agent import version
from agent.cli_common import CliError, config_path, load_keys, settings_from_args
from agent.cli_keys import add_keys_parser
from agent.config import ConfigError
from agent.enrollment import (
    Enrollment,
    NotEnrolled,
    keyring_path,
    portal_keys_from_relay,
)
from agent.localfiles import UntrustedFile, give_to_data_dir_owner
from wire.errors import KeyFileError
from wire.keyring import PortalKeyring
from wire.keys import AgentKeys

if TYPE_CHECKING:
    from agent.app import AgentApp

# How often `run`'s main loop looks at the signals noted and whether the agent stopped.
_SIGNAL_POLL = 0.2


def example_config() -> str:
    """agent.toml.example, shipped inside the package (works from a wheel)."""
    return resources.files("agent").joinpath("agent.toml.example").read_text(encoding="utf-8")


def toml_value(value: str) -> str:
    """`value` as a TOML string literal, escaped by a TOML writer (C:\\ProgramData...)."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def starter_config(data_dir: Path, relay_url: str | None) -> str:
    """The example with data_dir (and the relay URL) filled in, comments kept."""
    text = example_config()
    text = text.replace(
        'data_dir = "/var/lib/writeback-agent"', f"data_dir = {toml_value(str(data_dir))}", 1
    )
    if relay_url:
        text = text.replace(
            'url = "https://relay.example.com"', f"url = {toml_value(relay_url)}", 1
        )
    return text


# --------------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    config = config_path(args.config)
    from agent.localfiles import restrict_data_dir

    data_dir = Path(args.data_dir).resolve()
    keys_dir = data_dir / "keys"
    if (keys_dir / "signing.key").exists() and not args.force:
        raise CliError(f"{keys_dir} already holds keys (use --force to replace them)")
    keys = AgentKeys.generate(kem=args.kem)
    keys.save(keys_dir)
    restrict_data_dir(data_dir)
    print(
        f"generated agent keys in {keys_dir} (signing {keys.sign_kid}, encryption {keys.kem.kid})"
    )
    if config.exists() and not args.force:
        print(f"kept existing {config}")
    else:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(starter_config(data_dir, args.relay_url), encoding="utf-8")
        print(
            f"wrote starter configuration {config}: edit [[directories]], "
            "then run `writeback-agent enroll`"
        )
    return 0


# --------------------------------------------------------------------------- enroll


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.transports.base import TransportError
    from agent.transports.relay import enroll

    settings = settings_from_args(args)
    if settings.relay is None:
        raise CliError("no [relay] url in the configuration")
    keys = load_keys(settings)
    if settings.enrollment_path.exists() and not args.force:
        # Checked before the code is read, so a code given by mistake is not used up.
        try:
            who = f"as agent {Enrollment.load(settings.enrollment_path).agent_id}"
        except NotEnrolled:
            who = "(the record is unreadable)"
        raise CliError(
            f"already enrolled {who} ({settings.enrollment_path}): to enroll again, "
            "revoke the old agent at the relay (`writeback-relay agent remove ID`) and "
            "run `enroll --force`"
        )
    code = _enrollment_code(args)
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
    give_to_data_dir_owner(settings.data_dir)  # a re-enrollment as root of a running agent
    print(
        f"enrolled as agent {enrollment.agent_id} of tenant {enrollment.tenant}, "
        f"group {enrollment.agent_group}; trusting {len(keyring.keys)} portal key(s)"
    )
    return 0


def _enrollment_code(args: argparse.Namespace) -> str:
    """From --code-file (`-` = stdin), stdin when piped, WRITEBACK_ENROLLMENT_CODE, or
    --code. The flag is kept for scripts, but it shows in every user's `ps`."""
    if args.code_file:
        try:
            text = sys.stdin.read() if args.code_file == "-" else Path(args.code_file).read_text(
                encoding="utf-8"
            )
        except OSError as exc:
            raise CliError(f"cannot read the code from {args.code_file}: {exc.strerror}") from None
        code = text.strip()
    elif args.code:
        code = args.code
    elif os.environ.get("WRITEBACK_ENROLLMENT_CODE"):
        code = os.environ["WRITEBACK_ENROLLMENT_CODE"]
    elif not sys.stdin.isatty():
        code = sys.stdin.read().strip()
    else:
        import getpass

        code = getpass.getpass("one-time enrollment code: ").strip()
    if not code:
        raise CliError(
            "no enrollment code: pipe it in (`... enroll < code.txt`), or use --code-file"
        )
    return code


# --------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    from agent.checks import run_checks

    settings = settings_from_args(args)
    failures = 0
    for ok, name, detail in run_checks(settings, config_path(args.config)):
        mark = "ok  " if ok else "FAIL"
        print(f"[{mark}] {name}" + (f": {detail}" if detail else ""))
        failures += not ok
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import build_agent
    from agent.localfiles import check_trusted
    from agent.logging import configure_logging
    from agent.malloc import limit_arenas

    settings = settings_from_args(args)
    try:
        check_trusted(config_path(args.config))  # it names the relay, the CAs, data_dir
    except UntrustedFile as exc:
        raise CliError(f"refusing to start: {exc}") from None
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    limit_arenas()  # before any thread starts
    agent = build_agent(settings)

    noted: list[int] = []  # the handlers only note the signal; the loop below acts

    def _note(signum: int, _frame: Any) -> None:
        noted.append(signum)

    signal.signal(signal.SIGTERM, _note)
    signal.signal(signal.SIGINT, _note)
    if hasattr(signal, "SIGHUP"):  # not on Windows; the file watch covers it there
        signal.signal(signal.SIGHUP, _note)
    agent.start()
    try:
        _serve(agent, noted)
    finally:
        agent.stop()
    return 0


def _serve(agent: AgentApp, noted: list[int]) -> None:
    """Act on the signals `_note` noted (SIGHUP: reload the keys; the others: stop)
    until the agent stops. Why not in the handlers: Python runs a handler in the main
    thread between two of its bytecodes, so a handler that takes a lock can wait for
    one this thread already holds: stopping from the handler while this thread was in
    `Event.wait` on the same event can hang the agent for good. (CI once saw an agent
    ignore SIGTERM: no STOPPING=1, still running; this is the cause we found.) Waiting
    on the service's stop event here is safe now that no handler sets it, and unlike
    `time.sleep` it works under libfaketime (the skewed-clock tests), where
    clock_nanosleep fails with EINVAL."""
    hup = getattr(signal, "SIGHUP", None)
    while not agent.service.wait(_SIGNAL_POLL):  # not time.sleep: see the note above
        while noted:
            if noted.pop(0) == hup:
                agent.reload_keys()
            else:
                agent.service.stop()


# --------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    import httpx

    from agent.journal_probe import UnusableJournal, journal_counts

    settings = settings_from_args(args)
    out: dict[str, Any] = {
        "config": str(config_path(args.config)),
        "data_dir": str(settings.data_dir),
    }
    try:
        e = Enrollment.load(settings.enrollment_path)
        out["enrollment"] = {
            "agent_id": e.agent_id,
            "tenant": e.tenant,
            "agent_group": e.agent_group,
            "relay": settings.relay.url if settings.relay else e.relay_url,
            "enrolled_at": e.relay_url,
        }
    except NotEnrolled as exc:
        out["enrollment"] = str(exc)
    try:
        counts = journal_counts(settings.journal_path)
        if counts is not None:
            out["journal"] = counts
    except UnusableJournal as exc:
        out["journal"] = str(exc)
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
    # Like a failed check: 1 when the agent is not running or not ready (scripts and
    # monitoring can test it); 0 when it is, or when it has no health port to ask.
    return 1 if settings.health.enabled and not out.get("ready") else 0


# --------------------------------------------------------------------------- config


def cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "example":
        sys.stdout.write(example_config())
        return 0
    settings = settings_from_args(args)  # validate: load, print where it came from
    print(f"{config_path(args.config)}: valid ({len(settings.directories)} directory(ies))")
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="writeback-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(
        "--debug", action="store_true", help="print a traceback on errors (never secrets)"
    )
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
    p.add_argument(
        "--code-file",
        metavar="FILE",
        help="read the one-time code from FILE (`-`: stdin; stdin is read anyway when piped)",
    )
    p.add_argument(
        "--code", help="the code itself (visible to other local users in `ps`; prefer stdin)"
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing enrollment of this data dir"
    )
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("check", help="verify configuration, keys, relay and directories")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run the agent in the foreground")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        help="enrollment, journal counts and whether the agent is running"
        " (exit 1 when it is not running or not ready)",
    )
    p.set_defaults(func=cmd_status)

    add_keys_parser(sub)

    p = sub.add_parser("config", help="print the example configuration, or validate one")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("example", help="print agent.toml.example (every key, its default)")
    config_sub.add_parser("validate", help="load the configuration and report the first error")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors: argparse prints one line, exit 2
    from agent.logging import configure_logging

    # Before anything can log: structlog's defaults would print unredacted to stdout.
    configure_logging(level="warning")
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe raises here, inside the handlers below
        return status
    except (CliError, ConfigError, NotEnrolled, KeyFileError, UntrustedFile) as exc:
        _fail(args, exc)
        return 2
    except PermissionError as exc:
        # A file this user may not read or write: restarting will not fix it (exit 2).
        where = exc.filename or "a file"
        _fail(args, CliError(
            f"{where}: permission denied for this user (uid {_uid()}): the service account "
            "must own the data directory and be able to read agent.toml and the files it names"
        ))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `writeback-agent check | head`: the reader left; say nothing more, like cat.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        _fail(args, exc, unexpected=True)
        return 1


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "?")


def _fail(args: argparse.Namespace, exc: BaseException, *, unexpected: bool = False) -> None:
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    detail = f"unexpected {type(exc).__name__}: {exc}" if unexpected else str(exc)
    hint = " (run with --debug for the traceback)" if unexpected and not args.debug else ""
    print(f"writeback-agent {args.command}: {detail}{hint}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
