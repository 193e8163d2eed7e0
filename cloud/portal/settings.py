"""The portal's one settings object, read from a TOML file at start (portal.toml).

Two parts: how the portal runs (relay, keys, storage, mail, SMS) and the tenant's
policy (who may reset, with which methods, how many). Secrets (the relay API token,
the SMTP password, the SMS webhook token, the at-rest key) are never in the file
itself: each is a path to a 0600 file, so the TOML can be read, diffed and logged.
The one exception, `database_url`, may carry a password: prefer PGPASSFILE or the
WRITEBACK_PORTAL_DATABASE_URL environment variable (read by `load_settings`).
See docs/portal.md for every key.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MethodName = Literal["email", "mobile_phone", "office_phone", "app", "questions"]
ALL_METHODS: tuple[MethodName, ...] = ("email", "mobile_phone", "office_phone", "app", "questions")
DATABASE_URL_ENV = "WRITEBACK_PORTAL_DATABASE_URL"
_DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")

DEFAULT_QUESTIONS = [
    "In what city were you born?",
    "What was the name of your first pet?",
    "What was the make of your first car?",
    "What is the name of the street you grew up on?",
    "What was the name of your primary school?",
    "What is your oldest cousin's first name?",
    "In what city did your parents meet?",
    "What was your childhood nickname?",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantPolicy(_Model):
    """What the tenant's administrator decides (the seed's "Password reset" blade)."""

    # off: nobody; selected: only users matching `selected_users`; group: the members of
    # the directory groups the agents allow (their `allowed_groups`: the portal sees no
    # directory groups, the agents answer not_managed/not_in_allowed_group for anyone
    # else, and the portal shows "not enabled for password reset"); everyone.
    sspr: Literal["off", "selected", "group", "everyone"] = "everyone"
    # Glob patterns on the user ID, case-insensitive ("*@sales.acme.example", "alice@...").
    selected_users: list[str] = Field(default_factory=list)
    methods: list[MethodName] = Field(default_factory=lambda: list(ALL_METHODS))
    methods_to_reset: Literal[1, 2] = 1
    questions: list[str] = Field(default_factory=lambda: list(DEFAULT_QUESTIONS))
    questions_to_register: int = Field(default=3, ge=1, le=10)
    questions_to_reset: int = Field(default=3, ge=1, le=10)
    reconfirm_days: int = Field(default=180, ge=0)  # 0: never ask again
    allow_unlock: bool = True
    helpdesk_email: str | None = None
    # Office phones are set by the administrator only (user ID -> number), shown read-only.
    office_phones: dict[str, str] = Field(default_factory=dict)

    @field_validator("questions")
    @classmethod
    def _unique_questions(cls, value: list[str]) -> list[str]:
        if len({q.strip().lower() for q in value}) != len(value):
            raise ValueError("the question list repeats a question")
        return value

    def enabled_for(self, user_id: str) -> bool:
        if self.sspr in ("everyone", "group"):  # group: the agents decide (not_managed)
            return True
        if self.sspr == "off":
            return False
        lowered = user_id.lower()
        return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.selected_users)

    def methods_to_register(self) -> int:
        """Register as many as reset needs (Microsoft's rule), at least one."""
        return self.methods_to_reset


class SmtpSettings(_Model):
    # None: no mail server (only for a demo with the development outbox on).
    host: str | None = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    tls: bool = False  # implicit TLS (port 465)
    username: str | None = None
    password_file: Path | None = None
    sender: str = "no-reply@localhost"
    timeout: float = 10.0


class SmsSettings(_Model):
    """The generic HTTP webhook: the portal POSTs {kind, to, text, callback_url}."""

    webhook_url: str | None = None
    token_file: Path | None = None
    timeout: float = 10.0


class PortalSettings(_Model):
    title: str = "Password reset"
    organisation: str = "Your organisation"
    base_url: str = "http://127.0.0.1:8080"
    tenant: str
    agent_group: str = "default"
    relay_url: str
    relay_token_file: Path
    relay_ca_file: Path | None = None
    signing_key_file: Path  # the portal's Ed25519 key (PortalSigner.save format)
    data_dir: Path  # portal.sqlite3, unless database_url is set
    # A PostgreSQL URL (it may be the relay's database: the portal's tables are named
    # portal_*): several portal replicas share it instead of one SQLite file.
    database_url: SecretStr | None = None
    db_pool_size: int = Field(default=10, ge=1)  # connections per portal process at most
    # 32 random bytes (base64url or raw) that encrypt TOTP secrets at rest.
    secret_key_file: Path
    user_id_kind: Literal["upn", "login"] = "upn"
    # "Secure" on cookies; false only for a loopback http demo.
    secure_cookies: bool = True
    dev_outbox: bool = False  # the development outbox page (/dev/outbox): off by default
    session_minutes: int = Field(default=15, ge=1, le=240)
    retry_window_minutes: int = Field(default=10, ge=1, le=60)  # choose again without re-verifying
    min_failure_seconds: float = 1.0  # every failed sign-in answers after this long
    agent_timeout_seconds: float = 30.0
    # "what.user" / "what.ip" -> "N/period" (the `limits` notation); see web.DEFAULT_LIMITS.
    rate_limits: dict[str, str] = Field(default_factory=dict)
    policy: TenantPolicy = TenantPolicy()
    smtp: SmtpSettings = SmtpSettings()
    sms: SmsSettings = SmsSettings()

    @field_validator("database_url")
    @classmethod
    def _a_postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(_DATABASE_URL_SCHEMES):
            raise ValueError("database_url must start with postgresql:// or postgres://")
        return value

    def database_label(self) -> str:
        """The database for logs and messages, without credentials."""
        if self.database_url is None:
            return str(self.data_dir / "portal.sqlite3")
        scheme, _, rest = self.database_url.get_secret_value().partition("://")
        return f"{scheme}://{rest.rsplit('@', 1)[-1].split('?', 1)[0]}"

    def read_secret(self, path: Path | None) -> SecretStr | None:
        if path is None:
            return None
        return SecretStr(path.read_text(encoding="utf-8").strip())


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> PortalSettings:
    """Read portal.toml; relative paths are taken from the file's directory.
    $WRITEBACK_PORTAL_DATABASE_URL, when set and not empty, is the database_url (it
    wins over the file's)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    url = (os.environ if environ is None else environ).get(DATABASE_URL_ENV, "")
    if url:
        data["database_url"] = url
    base = path.parent
    for key in ("relay_token_file", "signing_key_file", "data_dir", "secret_key_file",
                "relay_ca_file"):
        if key in data and not Path(data[key]).is_absolute():
            data[key] = str(base / data[key])
    return PortalSettings.model_validate(data)
