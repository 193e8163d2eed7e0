"""The whole system on one machine, as a new user would run it (`./scripts/demo`).

1. a throwaway Samba AD DC (its own loopback address, our own CA, TLS validated);
2. the relay (`writeback-relay serve`, SQLite) with a tenant and a portal key;
3. the agent, set up with the real CLI: `init`, `enroll --code`, `check`, `run`;
4. a portal (cloud/sdk.py) sending real requests: a reset the user then logs in with,
   a refused password with its specific reason, `not_managed` for a protected admin;
5. everything stopped. Exit status 0 only if every step did what it should.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import tomli_w

# The editable install (scripts/bootstrap: pip install -e .) puts the checkout on the
# path, so the server library and the e2e harness import like any package.
from tests.e2e.harness import Portal, directory_entry, parent_dn
from tests.servers.base import BindOutcome
from tests.servers.relay import start_relay
from tests.servers.samba import DOMAIN_DN, running_samba

REPO = Path(__file__).resolve().parents[1]

BOLD, GREEN, RED, DIM, RESET = (
    ("\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)
failures: list[str] = []


def step(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def expect(what: str, ok: bool, detail: str = "") -> None:
    mark = f"{GREEN}ok{RESET}" if ok else f"{RED}FAILED{RESET}"
    print(f"   [{mark}] {what}" + (f"  {DIM}{detail}{RESET}" if detail else ""), flush=True)
    if not ok:
        failures.append(what)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="writeback-demo-"))
    with ExitStack() as stack:
        step("Starting a throwaway Samba AD DC (about 10 s)")
        started = time.monotonic()
        # The agent's scope is the whole domain, so its service account gets the
        # delegated reset rights on the domain head (inherited by every user object),
        # as an administrator would grant them; `check` verifies them there.
        samba = stack.enter_context(running_samba(work / "samba", also_delegate=(DOMAIN_DN,)))
        print(
            f"   {samba.settings.urls[0]} ready in {time.monotonic() - started:.0f} s; "
            f"CA {samba.settings.ca_file}"
        )

        step("Starting the relay (SQLite)")
        relay = start_relay(work / "relay")
        stack.callback(relay.stop)
        tenant, token = relay.create_tenant("contoso")
        from cloud.sdk import PortalSigner

        signer = PortalSigner.generate()
        key = signer.trusted_key()
        relay.add_portal_key(tenant, key.kid, key.key)
        print(f"   {relay.base_url}, tenant {tenant}, portal key {key.kid}")

        step("Setting up the agent with its CLI: init, enroll, check")
        config = work / "agent" / "agent.toml"
        data_dir = work / "agent" / "data"
        result = cli(config, "init", "--data-dir", str(data_dir), "--relay-url", relay.base_url)
        print("   " + result.stdout.strip().replace("\n", "\n   "))
        secrets_dir = work / "agent" / "secrets"
        secrets_dir.mkdir(mode=0o700)
        entry = directory_entry(
            samba.settings,
            secrets_dir,
            name="contoso",
            base_dns=[parent_dn(samba.base_dn)],
            default=True,
        )
        config.write_text(
            tomli_w.dumps(
                {
                    "data_dir": str(data_dir),
                    "agent_name": "demo-agent",
                    "workers": 2,
                    "relay": {"url": relay.base_url, "lease_wait_seconds": 2.0},
                    "health": {"port": 0},
                    "log": {"level": "info", "format": "json"},
                    "schedule": {"heartbeat_seconds": 2.0},
                    "directories": [entry],
                }
            )
        )
        code = relay.enrollment_code(tenant, "hq")
        result = cli(config, "enroll", "--code", code)
        expect(
            "enroll with a one-time code",
            result.returncode == 0,
            result.stdout.strip() or result.stderr.strip(),
        )
        result = cli(config, "check")
        print("   " + result.stdout.strip().replace("\n", "\n   "))
        expect("writeback-agent check passes", result.returncode == 0)

        step("Running the agent (writeback-agent run)")
        log_path = work / "agent" / "agent.log"
        with log_path.open("wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "-c", str(config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        def stop_agent() -> None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)

        stack.callback(stop_agent)
        portal = Portal(relay, tenant, token, "hq", signer)
        stack.callback(portal.close)
        deadline = time.monotonic() + 30
        while not any(a["online"] for a in portal.client.agents("hq")):
            if time.monotonic() > deadline or agent.poll() is not None:
                print(log_path.read_text())
                expect("agent online at the relay", False)
                return 1
            time.sleep(0.3)
        print(f"   agent online; its log: {log_path}")

        step("Alice forgot her password: the portal resets it")
        samba.create_user("alice", "Original-Pass-1", given_name="Alice", surname="Liddell")
        time.sleep(1.0)
        new_password = "Wonderland-Tea-42"
        reply = portal.send("reset", "alice", new_password=new_password)
        expect(
            "reset succeeded",
            reply.status == "succeeded",
            f"{reply.status}: {reply.message} (dc {reply.dc})",
        )
        expect(
            "alice logs in with the new password",
            samba.bind("alice", new_password) is BindOutcome.OK,
        )
        expect(
            "the old password no longer works",
            samba.bind("alice", "Original-Pass-1") is BindOutcome.INVALID_CREDENTIALS,
        )

        step("Bob chooses a password that breaks the policy")
        samba.create_user("bob", "Original-Pass-2", given_name="Bob", surname="Builder")
        time.sleep(1.0)
        reply = portal.send("reset", "bob", new_password="bob-builder-2024")
        expect(
            "refused with the specific reason",
            reply.status == "policy_violation" and reply.reason in ("contains_name", "complexity"),
            f"{reply.status}/{reply.reason}: {reply.message}",
        )
        print(f"   {DIM}policy sent to the portal: {reply.policy}{RESET}")

        step("Someone tries to reset the domain Administrator from the cloud")
        reply = portal.send("reset", "Administrator", new_password="Take-Over-123")
        expect(
            "not_managed: protected account",
            (reply.status, reply.reason) == ("not_managed", "protected_account"),
            reply.message,
        )

        step("Stopping everything")
    text = log_path.read_text()
    for password in ("Wonderland-Tea-42", "bob-builder-2024", "Take-Over-123", "Original-Pass-1"):
        if password in text:
            failures.append(f"a password appeared in the agent log ({password[:3]}...)")
    print(
        f"   agent log: {text.count(chr(10))} lines, no password in any of them"
        if not failures
        else ""
    )
    if failures:
        print(f"\n{RED}{len(failures)} step(s) failed: {', '.join(failures)}{RESET}")
        return 1
    print(f"\n{GREEN}Demo complete: every step did what it should.{RESET}")
    return 0


if __name__ == "__main__":
    if "--serve" in sys.argv[1:]:  # leave everything running, with the portal (demo_portal.py)
        from demo_portal import serve  # type: ignore[import-not-found]  # scripts/ on sys.path

        raise SystemExit(serve())
    raise SystemExit(main())
