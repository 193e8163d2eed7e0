"""Relay settings: built once in the CLI (flags over WRITEBACK_RELAY_* env) and passed
into `create_app`; nothing below reads the environment itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")


class RelayServerSettings(BaseSettings):
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
    # A redelivery of a request whose permit holder may still answer (it wrote, and its
    # post was lost or is being retried, or it restarts and re-posts) waits this long
    # past the holder's lease (BUSY) before it is answered in_doubt. The agent retries
    # a post 20 s past its lease and re-posts at start-up.
    late_answer_grace: float = Field(25.0, ge=0)
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

    # Tenants, agents and "a group has an agent online" are cached this long in each
    # relay process (cloud/relay/cache.py); other processes see changes within it.
    cache_ttl: float = Field(2.0, ge=0)

    # Per-tenant limits (cloud/relay/ratelimit.py): rates in the `limits` notation
    # ("100/second", "10 per minute"), over which calls get 429 with Retry-After.
    submit_rate: str = "500/second"
    long_poll_rate: str = "1000/second"
    enroll_rate_per_client: str = "10/minute"
    enroll_rate_total: str = "60/minute"
    max_long_polls_per_tenant: int = Field(64, gt=0)

    # Slow clients (docs/relay-limits.md has the open-file budget these make up):
    # a connection must deliver its request headers within header_timeout and the
    # whole body within body_timeout; an idle keep-alive connection is closed after
    # keep_alive_timeout; above limit_concurrency open connections, new requests get
    # 503 at once instead of waiting for a file descriptor.
    header_timeout: float = Field(10.0, gt=0)
    body_timeout: float = Field(10.0, gt=0)
    keep_alive_timeout: float = Field(5.0, gt=0)
    limit_concurrency: int = Field(900, gt=0)

    @field_validator(
        "submit_rate", "long_poll_rate", "enroll_rate_per_client", "enroll_rate_total"
    )
    @classmethod
    def _a_rate(cls, value: str) -> str:
        try:
            from limits import parse as parse_rate
        except ImportError:  # no cloud extra: admin commands only; `serve` says what to install
            return value
        parse_rate(value)  # ValueError names what is wrong
        return value

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
