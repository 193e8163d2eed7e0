"""A real relay for tests: `writeback-relay serve` as a subprocess on a free loopback
port with a temporary SQLite database, ready-polled with a deadline.

    relay = start_relay(tmp_path, lease_timeout=2)
    tenant, token = relay.create_tenant()
    agent = relay.enroll_agent(tenant, "default")          # Ed25519 key + enrollment
    with agent.transport() as transport, relay.portal(token) as portal:
        ...
    relay.stop()

Used by tests/integration/relay (fixtures in its conftest.py) and the end-to-end tests.
The relay runs as `python -m cloud.relay.cli` (the `writeback-relay` entry point) so it
works from a checkout whether or not the package is installed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.transports.relay import RelayTransport, enroll
from cloud.relay.client import PortalClient
from tests.servers._process import free_port
from wire.canonical import b64url_encode as b64url
from wire.canonical import canonical_json
from wire.signing import Domain, sign

_REPO = Path(__file__).resolve().parents[2]
_names = itertools.count(1)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return b64url(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


@dataclass
class EnrolledAgent:
    """An agent identity enrolled at the relay (keys generated here, as `enroll` does)."""

    agent_id: str
    tenant: str
    agent_group: str
    signing_key: Ed25519PrivateKey
    base_url: str
    enrollment: dict[str, Any]

    def transport(self, **kwargs: Any) -> RelayTransport:
        return RelayTransport(self.base_url, self.agent_id, self.signing_key, **kwargs)

    def heartbeat_body(self, **fields: Any) -> bytes:
        """A heartbeat signed with this agent's key, as the agent's service sends it."""
        return signed_heartbeat(self.signing_key, self.agent_id, **fields)


def signed_heartbeat(key: Ed25519PrivateKey, agent_id: str, **fields: Any) -> bytes:
    payload = {"v": 1, "type": "heartbeat", "agent_id": agent_id, "version": "0.1.0",
               "sent_at": int(time.time()), "directories": {}, "in_flight": 0, **fields}
    sig = sign(key, Domain.HEARTBEAT, payload)
    return canonical_json({"heartbeat": payload, "sig": sig.model_dump(mode="json")})


@dataclass
class RelayProcess:
    base_url: str
    admin_token: str
    db_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    settings: dict[str, float | str | bool] = field(default_factory=dict)

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.request(
            method, self.base_url + path, json=body, timeout=10,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def create_tenant(self, tenant: str | None = None) -> tuple[str, str]:
        """(tenant, portal API token) of a new tenant (unique name by default)."""
        tenant = tenant or f"tenant{next(_names)}"
        return tenant, str(self.admin("POST", "/v1/admin/tenants", {"tenant": tenant})["api_token"])

    def enrollment_code(self, tenant: str, group: str = "default", ttl: float = 3600) -> str:
        body = {"tenant": tenant, "agent_group": group, "ttl": ttl}
        return str(self.admin("POST", "/v1/admin/enrollment-codes", body)["code"])

    def add_portal_key(self, tenant: str, kid: str, public_key: str, **window: float) -> None:
        self.admin("POST", "/v1/admin/portal-keys",
                   {"tenant": tenant, "kid": kid, "public_key": public_key, **window})

    def remove_agent(self, agent_id: str) -> None:
        self.admin("DELETE", f"/v1/admin/agents/{agent_id}")

    def enroll_agent(
        self, tenant: str, group: str = "default", *, name: str | None = None,
        extra_keys: dict[str, Any] | None = None,
    ) -> EnrolledAgent:
        """Generate a signing key and enroll it with a fresh code."""
        key = Ed25519PrivateKey.generate()
        public_keys = {"sign_key": public_key_b64(key), **(extra_keys or {})}
        result = enroll(self.base_url, self.enrollment_code(tenant, group),
                        name or f"agent{next(_names)}", public_keys)
        return EnrolledAgent(result["agent_id"], tenant, group, key, self.base_url, result)

    def portal(self, token: str, **kwargs: Any) -> PortalClient:
        return PortalClient(self.base_url, token, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def calls(self) -> list[str]:
        """The paths of the HTTP calls it served (a relay started with access_log=True
        and log_level="info"; stop it first, so its log is complete)."""
        found = re.findall(r'\\"[A-Z]+ ([^ ?]+)[^ ]* HTTP/1\.1\\"', self.log())
        return [unquote(path) for path in found]  # uvicorn quotes the paths it logs

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


# Tests enroll many agents from one address in a short time; the enrollment rate
# limit has its own test (which passes a low rate explicitly).
_TEST_DEFAULTS = {"enroll_rate_per_client": "10000/minute", "enroll_rate_total": "10000/minute"}


def raw_connection(base_url: str) -> socket.socket:
    """A plain TCP connection to the relay, for tests that write HTTP bytes themselves."""
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_json_answer(sock: socket.socket) -> bytes:
    """One HTTP answer with a JSON object body, read from `sock` as bytes (headers and
    body), or what came before the relay closed the connection."""
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def start_relay(
    tmp_path: Path, *, ready_timeout: float = 20, log_level: str = "warning",
    database_url: str | None = None,
    **settings: float | str | bool,
) -> RelayProcess:
    """Start a relay; `settings` are serve flags (lease_timeout=2 -> --lease-timeout 2).
    The log (stdout+stderr) is in `relay.log()`. With `database_url` (postgresql://)
    the relay uses that database, so several relays can share it; it is passed in the
    environment, as a password in it would be, not on the command line."""
    settings = {**_TEST_DEFAULTS, **settings}
    tmp_path.mkdir(parents=True, exist_ok=True)
    token_file = tmp_path / "admin-token"
    admin_token = secrets.token_urlsafe(32)
    token_file.write_text(admin_token)
    token_file.chmod(0o600)
    db_path = tmp_path / "relay.sqlite3"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    db_flags = ["--db", str(db_path)]
    if database_url is not None:
        env["WRITEBACK_RELAY_DATABASE_URL"] = database_url
        db_flags = []
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
             for k, v in settings.items()]
    last_error = ""
    for attempt in range(3):  # a free port can be taken between probe and bind
        port = free_port()
        log_path = tmp_path / f"relay-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cloud.relay.cli", "serve", *db_flags,
                 "--host", "127.0.0.1", "--port", str(port), "--admin-token-file", str(token_file),
                 "--log-level", log_level, *flags],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            )
        relay = RelayProcess(f"http://127.0.0.1:{port}", admin_token, db_path, log_path, proc,
                             dict(settings))
        if _wait_ready(relay, ready_timeout):
            return relay
        relay.stop()
        last_error = relay.log()[-3000:]
        if "address already in use" not in last_error.lower():
            break
    raise RuntimeError(f"writeback-relay did not become ready:\n{last_error}")


def start_replicas(
    root: Path, database_url: str, names: Sequence[str] = ("a", "b"), *,
    ready_timeout: float = 20, log_level: str = "warning", **settings: float | str | bool,
) -> list[RelayProcess]:
    """Relays named `names` on one PostgreSQL database, started at once (so their
    migrations race, as real replicas' do); the rest as for `start_relay`."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = [pool.submit(start_relay, root / name, ready_timeout=ready_timeout,
                               log_level=log_level, database_url=database_url, **settings)
                   for name in names]
        outcomes = [f.exception() or f.result() for f in futures]
    started = [r for r in outcomes if isinstance(r, RelayProcess)]
    for failed in outcomes:
        if isinstance(failed, BaseException):
            for relay in started:
                relay.stop()
            raise failed
    return started


def _wait_ready(relay: RelayProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.proc.poll() is not None:
            return False
        try:
            if httpx.get(relay.base_url + "/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


def fake_envelope(
    tenant: str, group: str = "default", *, request_id: str | None = None, exp_in: float = 60.0,
    padding: int = 0,
) -> bytes:
    """A request envelope with real routing fields and dummy crypto: the relay never
    looks past header.id/tenant/agent_group/exp, so its tests need no protocol code."""
    now = time.time()
    return json.dumps(
        {
            "header": {"v": 1, "type": "request", "id": request_id or uuid.uuid4().hex,
                       "tenant": tenant, "agent_group": group, "op": "reset",
                       "iat": int(now), "exp": now + exp_in},
            "sealed": {"kid-1": "c2VhbGVk" + "A" * padding},
            "sig": {"kid": "portal-1", "value": "c2ln"},
        },
        separators=(",", ":"),
    ).encode()
