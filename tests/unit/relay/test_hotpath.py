"""The hot path (cloud/relay/hotpath.py) answers exactly as FastAPI does.

The same script of good and bad calls runs against two relays, one with the hot path
and one serving everything through FastAPI (`create_app(..., hot_path=False)`); every
answer (status, content type, WWW-Authenticate, JSON body with the values that are
random by design masked) must be the same, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from cloud.relay.app import create_app
from cloud.relay.hotroutes import HOT_ROUTES
from cloud.relay.settings import RelayServerSettings
from wire.canonical import b64url_encode
from wire.signed_call import auth_message, authorization_value, new_nonce

ADMIN = "admin-token-admin-token"
# Random by design (identifiers, times): compared as present, not by value.
_MASKED = {"lease_id", "lease_expires_at", "lease_seconds", "server_time", "agent_id",
           "api_token", "code", "expires_at"}
USER_KEY = "ab" * 32


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in _MASKED else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


class Script:
    """Drives one relay through the calls of a reset, good and bad, recording answers."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.answers: list[tuple[str, int, str, str, Any]] = []
        self.token = ""
        self.agent_id = ""
        self.key = Ed25519PrivateKey.generate()

    async def call(self, label: str, method: str, path: str, *, content: bytes = b"",
                   headers: dict[str, str] | None = None) -> httpx.Response:
        response = await self.client.request(method, path, content=content, headers=headers)
        try:
            body: Any = _mask(response.json())
        except ValueError:
            body = response.text
        self.answers.append((label, response.status_code,
                             response.headers.get("content-type", ""),
                             response.headers.get("www-authenticate", ""), body))
        return response

    def signed(self, method: str, path: str, body: bytes, *, nonce: str | None = None,
               key: Ed25519PrivateKey | None = None) -> dict[str, str]:
        ts, nonce = str(int(time.time())), nonce or new_nonce()
        sig = (key or self.key).sign(auth_message(method, path.encode(), ts, nonce, body))
        return {"Authorization": authorization_value(self.agent_id, ts, nonce, sig),
                "Content-Type": "application/json"}

    async def agent(self, label: str, path: str, body: Any = None, *, raw: bytes | None = None,
                    content_type: str = "application/json", **sign: Any) -> httpx.Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = self.signed("POST", path, data, **sign)
        headers["Content-Type"] = content_type
        return await self.call(label, "POST", path, content=data, headers=headers)

    async def portal(self, label: str, method: str, path: str, body: Any = None, *,
                     raw: bytes | None = None, token: str | None = None) -> httpx.Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = {"Authorization": f"Bearer {self.token if token is None else token}",
                   "Content-Type": "application/json"}
        return await self.call(label, method, path, content=data, headers=headers)

    async def setup(self) -> None:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        made = await self.client.post("/v1/admin/tenants", json={"tenant": "t1"}, headers=admin)
        self.token = made.json()["api_token"]
        code = (await self.client.post("/v1/admin/enrollment-codes", headers=admin,
                                       json={"tenant": "t1", "agent_group": "g"})).json()["code"]
        sign_key = b64url_encode(self.key.public_key().public_bytes(Encoding.Raw,
                                                                    PublicFormat.Raw))
        enrolled = await self.client.post("/v1/agents/enroll", json={
            "code": code, "name": "a1", "public_keys": {"sign_key": sign_key}})
        self.agent_id = enrolled.json()["agent_id"]


def _envelope(request_id: str, exp: float, **header: Any) -> dict[str, Any]:
    fields = {"id": request_id, "tenant": "t1", "agent_group": "g", "exp": exp, **header}
    return {"header": fields, "sealed": {"ct": "x"}, "sig": {"v": "y"}}


async def _run(s: Script, exp: float) -> None:
    await s.setup()
    # Agent: authentication first, then the query.
    await s.call("lease unsigned", "POST", "/v1/agent/lease")
    await s.agent("lease bad signature", "/v1/agent/lease", key=Ed25519PrivateKey.generate())
    await s.agent("lease nothing", "/v1/agent/lease")
    for query in ("wait=-1", "wait=abc", "wait=", "wait=0.0&wait=0", "wait=1e-3", "other=1",
                  "wait=%30"):
        await s.agent(f"lease ?{query}", f"/v1/agent/lease?{query}")
    for query in ("max=0", "max=17", "max=2.5", "max=16&wait=0"):
        await s.agent(f"leases ?{query}", f"/v1/agent/leases?{query}")
    await s.agent("lease waits", "/v1/agent/lease?wait=0.05")
    nonce = new_nonce()
    await s.agent("replay first", "/v1/agent/lease", nonce=nonce)
    await s.agent("replay second", "/v1/agent/lease", nonce=nonce)

    # Portal: submits.
    await s.portal("submit no token", "POST", "/v1/requests", _envelope("r1", exp), token="")
    await s.portal("submit bad token", "POST", "/v1/requests", _envelope("r1", exp), token="x")
    for n, doc in enumerate([_envelope("r1", exp), _envelope("r1", exp),
                             _envelope("r2", exp, tenant="t2"), _envelope("r3", exp - 1000),
                             _envelope("r4", exp + 10**6), {"header": {"id": "r5"}},
                             _envelope("bad id!", exp), [1, 2]]):
        await s.portal(f"submit {n}", "POST", "/v1/requests", doc)
    await s.portal("submit not json", "POST", "/v1/requests", raw=b"{nope")
    await s.portal("submit not utf-8", "POST", "/v1/requests", raw=b'{"header": "\xff"}')
    await s.portal("submit too large", "POST", "/v1/requests", raw=b" " * 5000)
    batch = {"envelopes": [json.dumps(_envelope("r6", exp)), "{", json.dumps(_envelope("r1", exp))]}
    await s.portal("submit batch", "POST", "/v1/requests:batch", batch)
    bad_batches: list[Any] = [{"envelopes": []}, {"envelopes": "x"}, {}, [1]]
    for n, bad in enumerate(bad_batches):
        await s.portal(f"submit batch bad {n}", "POST", "/v1/requests:batch", bad)
    await s.portal("submit batch text/plain", "POST", "/v1/requests:batch",
                   raw=json.dumps(batch).encode())

    # Agent: lease, permit, results.
    leased = await s.agent("leases", "/v1/agent/leases?max=2&wait=0")
    lease_ids = [lease["lease_id"] for lease in leased.json()["leases"]]
    first = lease_ids[0]
    permit = f"/v1/agent/leases/{first}/permit"
    for n, body in enumerate([{"user_key": "x"}, {}, {"user_key": USER_KEY, "ordered": "maybe"}]):
        await s.agent(f"permit bad {n}", permit, body)
    await s.agent("permit not json", permit, raw=b"{")
    await s.agent("permit text/plain", permit, {"user_key": USER_KEY}, content_type="text/plain")
    await s.agent("permit unknown lease", "/v1/agent/leases/lse_nope/permit",
                  {"user_key": USER_KEY})
    await s.agent("permit", permit, {"user_key": USER_KEY})
    await s.agent("permit again", permit, {"user_key": USER_KEY, "ordered": True})
    await s.agent("permits", "/v1/agent/permits", {"permits": [
        {"lease_id": lease_ids[-1], "user_key": "cd" * 32},
        {"lease_id": "lse_x", "user_key": USER_KEY}]})
    await s.agent("permits bad", "/v1/agent/permits", {"permits": []})
    result = json.dumps({"status": "ok", "n": 1.5})
    for n, body in enumerate([{"lease_id": first, "request_id": "r1", "result": "[1]"},
                              {"lease_id": first, "request_id": "r1", "result": "{"},
                              {"lease_id": first, "request_id": "r 1", "result": result},
                              {"lease_id": "lse_x", "request_id": "r1", "result": result}]):
        await s.agent(f"result {n}", "/v1/agent/results", body)
    await s.agent("result", "/v1/agent/results", {"lease_id": first, "request_id": "r1",
                                                  "result": result})
    await s.agent("result object", "/v1/agent/results", {"lease_id": first, "request_id": "r1",
                                                         "result": {"status": "ok"}})
    await s.agent("results batch", "/v1/agent/results/batch", {"results": [
        {"lease_id": lease_ids[-1], "request_id": "r6", "result": result},
        {"lease_id": "lse_x", "request_id": "r9", "result": result},
        {"lease_id": lease_ids[-1], "request_id": "r6", "result": "1"}]})
    await s.agent("results batch bad", "/v1/agent/results/batch", {"results": [{}]})

    # Portal: results.
    for path in ("/v1/requests/r1/result", "/v1/requests/r6/result?wait=0.01",
                 "/v1/requests/nope/result", "/v1/requests/r1/result?wait=x",
                 "/v1/requests/r1/result?wait=-1"):
        await s.portal(f"GET {path}", "GET", path)
    await s.portal("result no token", "GET", "/v1/requests/r1/result", token="")
    waits: list[Any] = [{"ids": ["r1", "r6", "nope", "r1"]}, {"ids": []}, {"ids": ["bad id"]},
                        {"ids": "r1"}]
    for n, ids in enumerate(waits):
        await s.portal(f"results:wait {n}", "POST", "/v1/requests/results:wait?wait=0", ids)
    await s.portal("results:wait ?wait=x", "POST", "/v1/requests/results:wait?wait=x",
                   {"ids": ["r1"]})
    # Portal: a submit that waits for its result in the same call.
    for label, target, doc in [
        ("submit wait pending", "/v1/requests?wait=0.01", _envelope("r7", exp)),
        ("submit wait refused", "/v1/requests?wait=0.01", _envelope("r1", exp)),
        ("submit wait=0", "/v1/requests?wait=0", _envelope("r8", exp)),
        ("submit ?wait=x", "/v1/requests?wait=x", _envelope("r9", exp)),
    ]:
        await s.portal(label, "POST", target, doc)
    # Not hot: still FastAPI's, in both.
    await s.agent("renew", f"/v1/agent/leases/{first}/renew")
    await s.agent("wrong method", "/v1/agent/results/batch/", {})


def _answers(path: Path, exp: float, *, hot_path: bool) -> list[tuple[str, int, str, str, Any]]:
    settings = RelayServerSettings(db=path, admin_token=SecretStr(ADMIN), max_body_bytes=2048)
    app = create_app(settings, hot_path=hot_path)

    async def run() -> list[tuple[str, int, str, str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            script = Script(client)
            await _run(script, exp)
            return script.answers

    try:
        return asyncio.run(run())
    finally:
        app.state.relay.store.close()


def test_the_hot_path_answers_as_fastapi_does(tmp_path: Path) -> None:
    exp = time.time() + 300
    hot = _answers(tmp_path / "hot.db", exp, hot_path=True)
    plain = _answers(tmp_path / "plain.db", exp, hot_path=False)
    assert [a[0] for a in hot] == [a[0] for a in plain]
    for hot_answer, plain_answer in zip(hot, plain, strict=True):
        assert hot_answer == plain_answer
    # The script reaches what it means to: successes and refusals of every kind.
    statuses = {label: status for label, status, *_ in hot}
    assert statuses["lease nothing"] == 204
    assert statuses["submit 0"] == 202
    assert statuses["leases"] == 200
    assert statuses["permit"] == 200
    assert statuses["result"] == 200
    assert statuses["GET /v1/requests/r1/result"] == 200
    assert statuses["replay second"] == 401
    assert statuses["lease ?wait=abc"] == 422
    assert statuses["permit not json"] == 400
    assert statuses["submit too large"] == 413
    assert statuses["submit wait pending"] == 202
    assert statuses["submit wait refused"] == 409
    assert statuses["submit ?wait=x"] == 422


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/v1/agent/lease", "lease"),
        ("POST", "/v1/agent/leases/lse_1/permit", "permit"),
        ("GET", "/v1/requests/r1/result", "result"),
        ("POST", "/v1/requests/results:wait", "wait_results"),
        ("GET", "/v1/agent/lease", None),
        ("POST", "/v1/agent/leases/lse_1/renew", None),
        ("POST", "/v1/agent/leases/a/b/permit", None),
        ("POST", "/v1/agent/leases//permit", None),
        ("HEAD", "/v1/requests/r1/result", None),
        ("POST", "/v1/agents/enroll", None),
    ],
)
def test_which_calls_the_hot_path_takes(method: str, path: str, name: str | None) -> None:
    found = HOT_ROUTES.find({"type": "http", "method": method, "path": path, "root_path": ""})
    assert (found[0].name if found else None) == name
