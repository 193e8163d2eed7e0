"""The agent's one settings object: agent.toml + WRITEBACK_* environment + secret files.

Built once in the CLI (`load_settings`) and passed into every constructor; nothing
below reads the environment or a config file on its own.

Precedence (highest first): keyword arguments (tests), WRITEBACK_* environment
variables (nested with `__`, e.g. WRITEBACK_LOG__LEVEL=debug), agent.toml.
Secrets are never written inline in production: `bind_password_file` names a file
(absolute; or relative: in $CREDENTIALS_DIRECTORY when systemd's LoadCredential= set
it, as borgmatic's credential hook does, else next to agent.toml).
"""

from __future__ import annotations

import ipaddress
import os
import platform
import stat
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from connectors.base import DirectorySettings


class ConfigError(Exception):
    """A configuration problem the operator must fix; the message says which key."""


# The directory of the agent.toml being loaded: relative secret files resolve there.
_CONFIG_DIR: ContextVar[Path | None] = ContextVar("config_dir", default=None)


def read_secret_file(path: Path) -> SecretStr:
    """A secret from a file (trailing newline stripped). A relative path resolves in
    $CREDENTIALS_DIRECTORY when it is set (systemd LoadCredential=), else next to
    agent.toml, so `check` in a shell and the service read the same secret."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    base = Path(creds) if creds else _CONFIG_DIR.get()
    candidate = base / path if base is not None and not path.is_absolute() else path
    try:
        mode = stat.S_IMODE(candidate.stat().st_mode)
        secret = SecretStr(candidate.read_text(encoding="utf-8").rstrip("\r\n"))
    except PermissionError:
        raise ConfigError(
            f"bind_password_file {candidate} cannot be read by this user: give it to the "
            "service account (mode 0600), or under systemd use LoadCredential="
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"bind_password_file {candidate}: {exc.strerror}: create it (the bind account's "
            "password, mode 0600) or fix the path"
        ) from exc
    if os.name == "posix" and mode & (stat.S_IROTH | stat.S_IWOTH):
        # Like ssh with a private key: a secret every local user can read is refused.
        raise ConfigError(
            f"bind_password_file {candidate} can be read or changed by every local user "
            f"(mode {mode:04o}): chmod 600 {candidate} (0640 with the service's group is fine)"
        )
    return secret


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); no DNS lookup."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _existing_file(value: Path | None, what: str) -> Path | None:
    """A file named in the configuration must be there, and readable by the user the
    agent runs as, now, not at the first request."""
    if value is None:
        return None
    try:
        if value.is_dir():  # (opening a directory is a PermissionError on Windows)
            raise IsADirectoryError(value)
        with value.open("rb"):
            pass
    except PermissionError:
        raise ValueError(
            f"{what} {value} cannot be read by this user: make it (and its directories) "
            "readable by the service account (a CA certificate is public: mode 0644)"
        ) from None
    except OSError as exc:
        reason = {IsADirectoryError: "is a directory", FileNotFoundError: "does not exist"}.get(
            type(exc), f"cannot be opened ({exc.strerror})"
        )
        raise ValueError(f"{what} {value} {reason}: fix the path or remove the key") from None
    return value


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

    @field_validator("urls")
    @classmethod
    def _ldap_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("ldap", "ldaps"):
                raise ValueError(f"{url!r} is not an ldaps:// or ldap:// URL")
            if not parts.hostname:
                raise ValueError(f"{url!r} names no host (ldaps://dc1.corp.example.com:636)")
            try:
                parts.port  # noqa: B018  (raises on a port that is not a number)
            except ValueError:
                raise ValueError(f"{url!r} has an invalid port") from None
        return urls

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value, "ca_file")

    @field_validator("connect_timeout", "receive_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _no_plain_ldap(self) -> DirectoryConfig:
        plain = [u for u in self.urls if urlsplit(u).scheme.lower() == "ldap"]
        if plain and not self.start_tls and not self.allow_insecure:
            raise ValueError(
                f"{plain[0]} would send the bind password in clear: use ldaps://, "
                "or set start_tls = true"
            )
        return self

    @property
    def write_scope(self) -> list[str]:
        """Where writes are allowed, so where `check` verifies the delegated rights."""
        return list(self.scope.base_dns or self.base_dns)

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
    timeout_seconds: float = Field(default=40.0, gt=0)
    # >1: one long-poll (the dispatcher's) leases for every idle worker, up to this
    # many requests per call; 1: each worker long-polls for its own request.
    lease_batch: int = Field(default=16, ge=1, le=16)
    # >1: results finished at about the same time go to the relay in one call (up to
    # this many); 1: each worker posts its own result (POST /v1/agent/results).
    result_batch: int = Field(default=16, ge=1, le=32)
    # >1: write permits asked while another worker's permit call is in flight go in
    # one call when it returns (up to this many); 1: one call per permit.
    permit_batch: int = Field(default=16, ge=1, le=16)
    # While this many writes are queued at the directory, results wait for the next
    # ones to share their call, and leasing waits for more idle workers (agent/backlog.py),
    # each at most this many writes' time and `hold_seconds`; 0: never.
    hold_depth: int = Field(default=4, ge=0, le=64)
    hold_seconds: float = Field(default=0.5, ge=0, le=5)

    @field_validator("url")
    @classmethod
    def _relay_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{url!r} is not an https:// URL (https://relay.example.com)")
        return url.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value, "ca_file")

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> RelaySettings:
        host = urlsplit(self.url).hostname or ""
        if urlsplit(self.url).scheme == "http" and not (
            is_loopback_host(host) or self.allow_insecure_http
        ):
            raise ValueError(
                f"{self.url} is plain http:// to a host that is not loopback: use https://"
            )
        return self


class HealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    # /readyz names the directories and /metrics counts requests: loopback only unless
    # this is true (e.g. a Prometheus on another host; put a firewall in front).
    allow_remote: bool = False

    @model_validator(mode="after")
    def _loopback(self) -> HealthSettings:
        if self.enabled and not self.allow_remote and not is_loopback_host(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address: use 127.0.0.1, "
                "or set allow_remote = true to expose health and metrics"
            )
        return self


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ScheduleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_seconds: float = Field(default=10.0, gt=0)
    health_probe_seconds: float = Field(default=60.0, gt=0)
    journal_prune_seconds: float = Field(default=3600.0, gt=0)
    journal_retention_days: float = Field(default=7.0, gt=0)
    key_expiry_check_seconds: float = Field(default=3600.0, gt=0)
    key_expiry_warn_days: float = Field(default=30.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WRITEBACK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Keys, enrollment record and journal live here (created 0700).
    data_dir: Path = Path("/var/lib/writeback-agent")
    # platform.node(): os.uname() does not exist on Windows.
    agent_name: str = Field(
        default_factory=lambda: platform.node() or "writeback-agent", min_length=1
    )
    # Master switch: false answers every request not_managed (writeback switched off).
    writeback_enabled: bool = True
    # Requests handled at once (one LDAP connection per directory each). With batch
    # leasing only the dispatcher long-polls, so idle workers cost nothing at the relay.
    workers: int = Field(default=16, ge=1, le=64)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    max_clock_skew_seconds: int = Field(default=60, ge=0)
    # Retries across DCs stop at min(request exp, received + this).
    directory_deadline_seconds: float = Field(default=30.0, gt=0)
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
    """Settings from `config_file` (TOML) + environment + overrides.

    Everything that can be known without the network is checked here, so `check`
    and `run` refuse the same configurations; every error is a ConfigError whose
    one line names the file, key or variable and what to do.
    """
    if config_file is not None:
        _readable_toml(config_file)

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

    where = str(config_file) if config_file is not None else "configuration"
    token = _CONFIG_DIR.set(config_file.resolve().parent if config_file is not None else None)
    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None
    except SettingsError as exc:
        # pydantic-settings: an environment value that is not the JSON a list or table
        # needs, e.g. WRITEBACK_DIRECTORIES=corp.
        raise ConfigError(
            f"{_env_hint(str(exc))} is not valid JSON for a list or table "
            """(e.g. '[{"name": "corp", ...}]'): fix it or unset it"""
        ) from None
    finally:
        _CONFIG_DIR.reset(token)
    return loaded


def _readable_toml(path: Path) -> None:
    """The file exists, is a file, is UTF-8 and parses as TOML (line and column if not)."""
    if not path.exists():
        raise ConfigError(
            f"configuration file {path} does not exist (writeback-agent init makes one)"
        )
    if not path.is_file():
        raise ConfigError(f"configuration file {path} is not a file: give the path of agent.toml")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    # Say so when the value came from the environment, not from the file.
    parts = [str(p).upper() for p in err["loc"] if not isinstance(p, int)]
    if parts:
        exact = ["WRITEBACK_" + "__".join(parts[:n]) for n in range(len(parts), 0, -1)]
        below = sorted(k for k in os.environ if k.startswith(exact[0] + "__"))
        names = [n for n in exact if n in os.environ][:1] or below
        if names:
            loc = f"{loc} (from {', '.join(names)})"
    return f"{loc}: {msg}" if loc else msg


def _env_hint(message: str) -> str:
    for name in Settings.model_fields:
        if f'"{name}"' in message:
            return f"environment variable WRITEBACK_{name.upper()}"
    return "environment"
