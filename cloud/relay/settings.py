"""Relay settings: built once in the CLI (flags over WRITEBACK_RELAY_* env) and passed
into `create_app`; nothing below reads the environment itself."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WRITEBACK_RELAY_", extra="forbid")

    db: Path = Path("relay.sqlite3")
    host: str = "127.0.0.1"
    port: int = 8080
    # Read from --admin-token-file (or $CREDENTIALS_DIRECTORY/admin-token) by the CLI.
    admin_token: SecretStr | None = None

    # An agent counts as online this long after its last lease poll or heartbeat.
    presence_timeout: float = Field(30.0, gt=0)
    # A leased request goes back to the queue when not renewed within this time.
    lease_timeout: float = Field(30.0, gt=0)
    # Request/result bodies larger than this are refused (413): envelopes are small.
    max_body_bytes: int = Field(64 * 1024, gt=0)
    # A request may not live longer than this (its exp), so the queue stays short.
    max_request_ttl: float = Field(900.0, gt=0)
    # Upper bounds of the long-polls (the ?wait= values are clamped to these).
    max_result_wait: float = Field(60.0, gt=0)
    max_lease_wait: float = Field(30.0, gt=0)
    # Long-polls re-check the store this often, so replicas sharing a database see
    # each other's writes even without an in-process wake-up.
    poll_interval: float = Field(0.5, gt=0)
    # Agent request signatures are accepted within this clock skew.
    auth_skew: float = Field(300.0, gt=0)
    # Answered or expired requests (and stale enrollment codes) are deleted after this.
    retention: float = Field(3600.0, gt=0)
    prune_interval: float = Field(60.0, gt=0)
    # SIGTERM: open long-polls get this long to finish before the server stops.
    graceful_shutdown: float = Field(3.0, ge=0)
