"""The agent's one settings object: agent.toml + WRITEBACK_* environment + secret files.

Built once in the CLI (`load_settings`) and passed into every constructor; nothing
below reads the environment or a config file on its own.

Precedence (highest first): keyword arguments (tests), WRITEBACK_* environment
variables (nested with `__`, e.g. WRITEBACK_LOG__LEVEL=debug), agent.toml.
Secrets are never written inline in production: `bind_password_file` names a file
(absolute, or relative to $CREDENTIALS_DIRECTORY when systemd's LoadCredential= is
used, as borgmatic's credential hook does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connectors.base import DirectorySettings


class ConfigError(Exception):
    """A configuration problem the operator must fix; the message says which key."""


def read_secret_file(path: Path) -> SecretStr:
    """A secret from a file (trailing newline stripped); relative paths resolve
    against $CREDENTIALS_DIRECTORY first (systemd credentials), then the cwd."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    candidate = Path(creds) / path if creds and not path.is_absolute() else path
    try:
        return SecretStr(candidate.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {candidate}: {exc.strerror}") from exc


class ScopeSettings(BaseModel):
    """Who may have a password written back; everyone else gets `not_managed`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    writeback_enabled: bool = True
    # Where writeback is allowed; empty = the directory's search bases (base_dns).
    # Users found elsewhere (e.g. a broader search base) are answered not_managed.
    base_dns: list[str] = Field(default_factory=list)
    # Group DNs; membership is nested. Empty allowed_groups = everyone in base_dns.
    allowed_groups: list[str] = Field(default_factory=list)
    denied_groups: list[str] = Field(default_factory=list)
    # AD adminCount=1 accounts (Domain Admins & co.) are never reset from the cloud.
    protect_admin_accounts: bool = True
    protected_groups: list[str] = Field(default_factory=list)


class DirectoryConfig(DirectorySettings):
    """A directory plus how requests are routed to it and who is in scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Routing: UPN/mail suffixes (corp.example.com) and NetBIOS domains (CORP\\alice).
    upn_suffixes: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    default: bool = False
    scope: ScopeSettings = Field(default_factory=ScopeSettings)

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bind_password_file" in data:
            data = dict(data)
            path = data.pop("bind_password_file")
            if data.get("bind_password") is None:
                data["bind_password"] = read_secret_file(Path(path))
        return data


class RelaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    ca_file: Path | None = None
    # http:// is accepted for loopback relays (demo, tests) only unless this is set.
    allow_insecure_http: bool = False
    lease_wait_seconds: float = Field(default=20.0, gt=0, le=30)
    timeout_seconds: float = 40.0
    # >1: one long-poll leases up to this many requests for idle workers (batching).
    lease_batch: int = Field(default=1, ge=1, le=16)


class HealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ScheduleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_seconds: float = 10.0
    health_probe_seconds: float = 60.0
    journal_prune_seconds: float = 3600.0
    journal_retention_days: float = 7.0
    key_expiry_check_seconds: float = 3600.0
    key_expiry_warn_days: float = 30.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WRITEBACK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Keys, enrollment record and journal live here (created 0700).
    data_dir: Path = Path("/var/lib/writeback-agent")
    agent_name: str = Field(default_factory=lambda: os.uname().nodename)
    # Master switch: false answers every request not_managed (writeback switched off).
    writeback_enabled: bool = True
    workers: int = Field(default=4, ge=1, le=64)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    max_clock_skew_seconds: int = 60
    # Retries across DCs stop at min(request exp, received + this).
    directory_deadline_seconds: float = 30.0
    relay: RelaySettings | None = None
    directories: list[DirectoryConfig] = Field(default_factory=list)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)

    @model_validator(mode="after")
    def _unique_directory_names(self) -> Settings:
        names = [d.name for d in self.directories]
        if len(names) != len(set(names)):
            raise ValueError("directories: every directory needs a distinct name")
        if sum(d.default for d in self.directories) > 1:
            raise ValueError("directories: at most one directory may be default = true")
        return self

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite3"

    @property
    def enrollment_path(self) -> Path:
        return self.data_dir / "enrollment.json"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `config_file` (TOML) + environment + overrides; errors name the key."""
    if config_file is not None and not config_file.exists():
        raise ConfigError(
            f"configuration file {config_file} does not exist (writeback-agent init makes one)"
        )

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            return tuple(sources)

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    return loaded
