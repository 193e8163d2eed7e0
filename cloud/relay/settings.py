"""Relay settings: built once in the CLI (flags over WRITEBACK_RELAY_* env) and passed
into `create_app`; nothing below reads the environment itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WRITEBACK_RELAY_", extra="forbid")

    # The SQLite file, unless database_url names a PostgreSQL database (several relay
    # replicas on one database). `db` may be given a postgresql:// URL too (--db URL);
    # it is moved to database_url. A password in the URL is a secret: prefer PGPASSFILE
    # or the WRITEBACK_RELAY_DATABASE_URL environment over a command-line flag.
    db: Path = Path("relay.sqlite3")
    database_url: SecretStr | None = None
    # Connections each relay process keeps to PostgreSQL at most (psycopg_pool).
    db_pool_size: int = Field(10, ge=1)
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

    @model_validator(mode="before")
    @classmethod
    def _url_given_as_db(cls, data: Any) -> Any:
        if isinstance(data, dict):
            db = data.get("db")
            if isinstance(db, str) and db.startswith(_DATABASE_URL_SCHEMES):
                if data.get("database_url"):
                    raise ValueError("give the database as db or as database_url, not both")
                data = {k: v for k, v in data.items() if k != "db"}
                data["database_url"] = db
        return data

    def database_label(self) -> str:
        """The database for logs and messages, without credentials."""
        if self.database_url is None:
            return str(self.db)
        url = self.database_url.get_secret_value()
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.rsplit('@', 1)[-1].split('?', 1)[0]}"
