"""`writeback-agent keys show|rotate`: print this agent's public keys, or rotate its
encryption (HPKE) key with an overlap so requests already sealed to the old key
still open."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from agent.cli_common import CliError, load_keys, settings_from_args
from agent.enrollment import Enrollment, NotEnrolled
from agent.localfiles import give_to_data_dir_owner


def add_keys_parser(sub: Any) -> None:
    """The `keys` subcommand on the CLI's subparsers."""
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


def cmd_keys(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    keys = load_keys(settings)
    if args.keys_command == "show":
        try:
            agent_id: str | None = Enrollment.load(settings.enrollment_path).agent_id
        except NotEnrolled:
            agent_id = None  # keys exist before enrollment; the relay assigns the id
        print(json.dumps(keys.public(agent_id).model_dump(mode="json"), indent=2, sort_keys=True))
        return 0
    # rotate: new HPKE key; the previous one keeps opening queued requests for --overlap.
    from agent.enrollment import relay_transport
    from agent.transports.base import TransportError

    rotated = keys.rotate_kem(now=int(time.time()), overlap=args.overlap)
    enrollment = Enrollment.load(settings.enrollment_path)
    # Save first: a running agent picks the new key up from disk before any portal can
    # seal to it (the relay learns it only below), so no request is ever rejected.
    rotated.save(settings.keys_dir)
    give_to_data_dir_owner(settings.data_dir)  # run as root: the agent must read them
    transport = relay_transport(settings, enrollment, keys)
    try:
        transport.update_keys(rotated.public(enrollment.agent_id).model_dump(mode="json"))
    except TransportError as exc:
        keys.save(settings.keys_dir)  # put the old keys back: the relay never saw the new one
        give_to_data_dir_owner(settings.data_dir)
        raise CliError(
            f"the relay did not take the new public key ({exc}); nothing was changed"
        ) from None
    finally:
        transport.close()
    print(
        f"rotated encryption key: new {rotated.kem.kid}; previous {keys.kem.kid} "
        f"still opens requests for {args.overlap} s; a running agent picks both up by itself."
    )
    return 0
