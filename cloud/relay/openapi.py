"""The published OpenAPI document says what the server checks: who may call each
operation (security schemes, from the same prefix table that authenticates), and the
refusals every operation can answer in our error shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cloud.relay.authfirst import scheme_for

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "agentSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "An enrolled agent's signed call: `WBA1 agent=<agent_id>, "
        "ts=<unix seconds>, nonce=<16-64 base64url chars>, sig=<base64url Ed25519>` over "
        "the method, path and query, ts, nonce and SHA-256 of the body "
        "(docs/protocol.md). Each call is accepted once.",
    },
    "portalToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The tenant's portal API token (wbr_...), from `tenant add`.",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The relay's admin token (serve --admin-token-file).",
    },
}
_ERROR = {"$ref": "#/components/schemas/ErrorBody"}
_RATE_LIMITED = {
    "/v1/agents/enroll",
    "/v1/agent/lease",
    "/v1/requests",
    "/v1/requests:batch",
    "/v1/requests/{request_id}/result",
    "/v1/requests/results:wait",
}
_REFUSALS = {
    "400": "body is not UTF-8 JSON, or a value is out of bounds (nesting, non-finite number)",
    "401": "not authenticated (missing, malformed, replayed or bad credentials)",
    "429": "over a per-tenant rate or long-poll limit; see Retry-After",
}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in doc.get("paths", {}).items():
            scheme = scheme_for(path)
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                wanted = ["429"] if path in _RATE_LIMITED else []
                if scheme is not None:
                    operation["security"] = [{scheme: []}]
                    wanted.append("401")
                if "requestBody" in operation:
                    wanted.append("400")
                for status in wanted:
                    responses.setdefault(
                        status,
                        {
                            "description": _REFUSALS[status],
                            "content": {"application/json": {"schema": _ERROR}},
                        },
                    )
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
