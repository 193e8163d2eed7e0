"""`./scripts/demo --serve`: the whole system left running for a person to click
through every portal flow in a browser, until Ctrl+C.

A throwaway Samba AD DC, the relay (SQLite), an enrolled agent, and the portal on
http://127.0.0.1:8080 with the development outbox (/dev/outbox) standing in for mail
and text messages. Prints the URL and the test users; Ctrl+C stops everything.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pyotp
import tomli_w
import uvicorn

from agent.logging import configure_logging
from cloud.portal.app import build_services, create_app
from cloud.portal.crypto import generate_key_file
from cloud.portal.settings import load_settings
from tests.e2e.harness import AgentSystem, directory_entry, parent_dn
from tests.servers._process import free_port, port_open
from tests.servers.relay import start_relay
from tests.servers.samba import running_samba
from tests.servers.samba_env import DOMAIN_DN, UPN_SUFFIX

PASSWORD = "Demo-Pass-2024"
ANSWERS = {
    "In what city were you born?": "Springfield",
    "What was the name of your first pet?": "Rex",
    "What was the make of your first car?": "Saab",
}


def serve(port: int = 8080) -> int:
    work = Path(tempfile.mkdtemp(prefix="writeback-portal-demo-"))
    configure_logging(level="warning", fmt="console")
    with ExitStack() as stack:
        print("Starting a throwaway Samba AD DC, the relay and an agent (~30 s)", flush=True)
        # The agent's scope is the whole domain: delegate the reset rights on the
        # domain head, as an administrator would, so the health probe sees them there.
        samba = stack.enter_context(running_samba(work / "samba", also_delegate=(DOMAIN_DN,)))
        relay = start_relay(work / "relay")
        stack.callback(relay.stop)
        secrets_dir = work / "secrets"
        secrets_dir.mkdir(mode=0o700)
        entry = directory_entry(samba.settings, secrets_dir, name="contoso",
                                base_dns=[parent_dn(samba.base_dn)], default=True)
        system = AgentSystem.create(work / "agent", relay, [entry])
        system.start_agent()
        stack.callback(system.close)

        conf = work / "portal"
        conf.mkdir()
        (conf / "relay.token").write_text(system.portal.token)
        system.portal.signer.save(conf / "portal.key")
        generate_key_file(conf / "at-rest.key")
        if port_open("127.0.0.1", port):
            port = free_port()
        url = f"http://127.0.0.1:{port}"
        (conf / "portal.toml").write_text(tomli_w.dumps({
            "organisation": "Contoso", "base_url": url,
            "tenant": system.portal.tenant, "agent_group": system.portal.group,
            "relay_url": relay.base_url, "relay_token_file": "relay.token",
            "signing_key_file": "portal.key", "secret_key_file": "at-rest.key",
            "data_dir": "data", "secure_cookies": False, "dev_outbox": True,
            "policy": {"methods_to_reset": 2, "helpdesk_email": "helpdesk@contoso.example"},
            "smtp": {"host": ""},
        }))
        settings = load_settings(conf / "portal.toml")
        services = build_services(settings)
        stack.callback(services.close)

        for login, given in (("alice", "Alice"), ("bob", "Bob")):
            samba.create_user(login, PASSWORD, given_name=given, surname="Demo")
        # A protected account (adminCount=1, like a domain admin): the agent refuses it,
        # so the portal shows "Please contact your administrator". (The built-in
        # Administrator has no UPN, so by UPN it is simply not found.)
        samba.create_user("carol", PASSWORD, given_name="Carol", surname="Admin", protected=True)
        alice = f"alice@{UPN_SUFFIX}"
        totp = pyotp.random_base32()
        now = time.time()
        vault = services.verifier.secrets
        services.store.method_put(alice, "email", {"address": "alice@home.example"}, now)
        services.store.method_put(alice, "app", {"secret": vault.seal(totp, alice)}, now)
        services.store.method_put(alice, "questions", {"items": [
            {"q": q, "h": vault.hash_answer(a)} for q, a in ANSWERS.items()]}, now)

        hint = f".venv/bin/python -c \"import pyotp; print(pyotp.TOTP('{totp}').now())\""
        print(f"""
The portal is running: {url}
  development outbox (mail and texts that would have been sent): {url}/dev/outbox

  alice@{UPN_SUFFIX} / {PASSWORD}   registered: email, authenticator app, questions
      authenticator key: {totp}
        (add it to an app, or run: {hint})
      answers: {'; '.join(f'{q} {a}' for q, a in ANSWERS.items())}
  bob@{UPN_SUFFIX} / {PASSWORD}     not registered yet: sign in at {url}/register
      (reset or unlock: "We could not verify your account"; lock an account with 3 wrong
       passwords at {url}/register, then unlock it at {url}/unlock)
  carol@{UPN_SUFFIX} / {PASSWORD}   a protected admin account: reset shows "Please contact
      your administrator", and "Contact an administrator" mails the help desk (see the outbox)

Policy: {conf / 'portal.toml'}. Ctrl+C stops everything.
""", flush=True)
        uvicorn.run(create_app(settings, services), host="127.0.0.1", port=port,
                    log_level="warning")
    return 0
