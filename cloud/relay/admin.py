"""Admin operations shared by the CLI (`writeback-relay tenant add`, ...) and the admin
HTTP API (`/v1/admin/...`, Bearer admin token), so both validate the same way."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.relay.auth import hash_secret, new_enrollment_code, new_tenant_token, normalize_code
from cloud.relay.store import AgentStore, PortalKey, TenantStore
from wire.canonical import b64url_decode


class InvalidPortalKey(ValueError):
    """A portal key that no agent could use (not Ed25519, or an empty window)."""


def create_tenant(store: TenantStore, tenant: str, now: float) -> str:
    """Create the tenant; returns its portal API token (shown once, stored hashed)."""
    token = new_tenant_token()
    store.add_tenant(tenant, hash_secret(token), now)
    return token


def create_enrollment_code(
    store: AgentStore, tenant: str, agent_group: str, ttl: float, now: float
) -> tuple[str, float]:
    """A one-time code for one agent of `agent_group`; returns (code, expires_at)."""
    code = new_enrollment_code()
    expires_at = now + ttl
    code_hash = hash_secret(normalize_code(code))
    store.add_enrollment_code(code_hash, tenant, agent_group, expires_at, now)
    return code, expires_at


def add_portal_key(store: TenantStore, tenant: str, key: PortalKey, now: float) -> None:
    """Pin a portal signing key. Garbage is refused here rather than by every agent."""
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(key.public_key))
    except (ValueError, TypeError) as exc:
        raise InvalidPortalKey("public_key must be a base64url raw Ed25519 public key") from exc
    if key.not_before is not None and key.not_after is not None and key.not_after <= key.not_before:
        raise InvalidPortalKey("not_after must be later than not_before")
    store.add_portal_key(tenant, key, now)
