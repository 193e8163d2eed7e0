"""App-level behaviour that is easier to reach in-process (httpx.ASGITransport; not
Starlette's Client, which warns with this Starlette and warnings are errors)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cloud.relay.app import create_app
from cloud.relay.settings import RelayServerSettings

ADMIN = "admin-token-admin-token"


class Client:
    """Sync facade over an in-process ASGI app (one event loop per call is fine here)."""

    def __init__(self, app: Any) -> None:
        self._transport = httpx.ASGITransport(app=app)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=self._transport, base_url="http://relay") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(call())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    settings = RelayServerSettings(
        db=tmp_path / "r.db", admin_token=SecretStr(ADMIN), max_body_bytes=1024
    )
    app = create_app(settings)
    yield Client(app)
    app.state.relay.store.close()


def _tenant_token(client: Client) -> str:
    response = client.post("/v1/admin/tenants", json={"tenant": "t1"},
                           headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 201
    return str(response.json()["api_token"])


def test_chunked_body_over_the_limit_is_refused(client: Client) -> None:
    token = _tenant_token(client)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    response = client.post("/v1/requests", content=chunks(),
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_validation_errors_do_not_echo_input(client: Client) -> None:
    response = client.post("/v1/agents/enroll",
                           json={"code": "SECRET-CODE-VALUE", "name": 5, "public_keys": "zz"})
    assert response.status_code == 422
    assert "SECRET-CODE-VALUE" not in response.text
    assert response.json()["error"] == "invalid_request"


def test_portal_routes_need_a_token(client: Client) -> None:
    assert client.get("/v1/groups/g/agents").json()["error"] == "missing_token"
    bad = client.get("/v1/groups/g/agents", headers={"Authorization": "Bearer wbr_x"})
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_token")


def test_admin_portal_key_validation(client: Client) -> None:
    _tenant_token(client)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    bad = client.post("/v1/admin/portal-keys", headers=headers,
                      json={"tenant": "t1", "kid": "k", "public_key": "bm90LWEta2V5"})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_portal_key")
    missing = client.post("/v1/admin/enrollment-codes", headers=headers,
                          json={"tenant": "nope", "agent_group": "g"})
    assert missing.status_code == 404
    again = client.post("/v1/admin/tenants", json={"tenant": "t1"}, headers=headers)
    assert again.status_code == 409
