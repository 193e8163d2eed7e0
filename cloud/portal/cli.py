"""`writeback-portal`: serve the portal, or create its key files.

    writeback-portal -c portal.toml keys      # signing key + at-rest key, 0600
    writeback-portal -c portal.toml serve --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloud.portal.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="writeback-portal")
    parser.add_argument("-c", "--config", type=Path, required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    sub.add_parser("keys", help="create the signing and at-rest key files if missing")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    if args.command == "keys":
        from cloud.portal.crypto import generate_key_file
        from cloud.sdk import PortalSigner

        if not settings.signing_key_file.exists():
            PortalSigner.generate().save(settings.signing_key_file)
        if not settings.secret_key_file.exists():
            generate_key_file(settings.secret_key_file)
        signer = PortalSigner.load(settings.signing_key_file)
        trusted = signer.trusted_key()
        print(f"portal key id {trusted.kid}; public key {trusted.key}")
        print("register it at the relay: writeback-relay portal-key add ...")
        return 0
    import uvicorn

    from cloud.portal.app import create_app
    from cloud.portal.store import DatabaseUnavailable

    try:
        app = create_app(settings)
    except DatabaseUnavailable as exc:
        print(f"writeback-portal: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
