"""sc2s3.config
~~~~~~~~~~~~~~~

Loads and validates the agent's TOML config (contract: docs/config.md).

Unknown sections and keys are errors so that a typo cannot pass silently. Every problem is reported
as a :class:`~sc2s3.errors.ConfigError` whose message is one line naming the key and the fix.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/sc2s3/config.toml"
CONFIG_ENV = "SC2S3_CONFIG"
MIB = 1024 * 1024


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _optional_http_url(value: str) -> str:
    return _http_url(value) if value else ""


def _redirect_url(value: str) -> str:
    # Kept exactly as written: SoundCloud compares it with the app's registered redirect.
    if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise ValueError("must be an http:// or https:// URL (the app's registered redirect)")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SoundCloudConfig(_Section):
    api_url: HttpUrl = "https://api.soundcloud.com"
    auth_url: HttpUrl = "https://secure.soundcloud.com"
    client_id: str = Field(min_length=1)
    client_secret: str | None = Field(default=None, min_length=1, repr=False)
    client_secret_file: str | None = None
    accounts: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    play_budget: int = Field(default=15_000, ge=1)  # plays (/download, /streams) per 24 h per app
    # The app's registered redirect, where `sc2s3 authorize` receives the owner's consent
    # (sc2s3.authorize requires a loopback http URL with an explicit port).
    redirect_uri: Annotated[str, AfterValidator(_redirect_url)] = "http://127.0.0.1:8765/callback"

    @model_validator(mode="after")
    def _one_secret_source(self) -> SoundCloudConfig:
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("set exactly one of client_secret_file or client_secret")
        return self

    @field_validator("client_secret_file")
    @classmethod
    def _readable_secret_file(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"file {value} does not exist or is not readable")
        return value

    def read_client_secret(self) -> str:
        """The client secret, from the file when one is named (read on each call: rotation)."""
        if self.client_secret is not None:
            return self.client_secret
        return Path(self.client_secret_file).read_text(encoding="utf-8").strip()


class S3Config(_Section):
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = "soundcloud/"
    region: str = "us-east-1"
    endpoint_url: Annotated[str, AfterValidator(_optional_http_url)] = ""

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a relative key prefix without '..' (e.g. 'soundcloud/')")
        return value if not value or value.endswith("/") else value + "/"


class AgentConfig(_Section):
    state_dir: str = "/var/lib/sc2s3"
    poll_interval_s: float = Field(default=900, gt=0)
    concurrency: int = Field(default=4, ge=1)
    part_size_mib: int = Field(default=16, ge=5, le=5120)
    health_listen: str = Field(default="127.0.0.1:9464", pattern=r"^[^:\s]+:\d{1,5}$")
    # How often an archived original is re-checked against the CDN for a replaced upstream file
    # (one play each; skipped while less than half of the play budget is left). 0: never.
    recheck_interval_s: float = Field(default=7 * 86_400, ge=0)
    # A host silent this long (no heartbeat, no lease renewal) loses its accounts to the fleet.
    lease_ttl_s: float = Field(default=600, ge=10)
    # The restore drill: archived revisions the fleet reads back and checks per day. 0: none.
    drill_sample_per_day: int = Field(default=20, ge=0)

    @property
    def part_size(self) -> int:
        """Multipart part size in bytes."""
        return self.part_size_mib * MIB

    @property
    def health_address(self) -> tuple[str, int]:
        host, port = self.health_listen.rsplit(":", 1)
        return host, int(port)


class CloudWatchConfig(_Section):
    # The Fleet dimension of the cycle's figures (sc2s3.cloudwatch); empty: publish none.
    fleet: str = ""
    endpoint_url: Annotated[str, AfterValidator(_optional_http_url)] = ""


class Config(_Section):
    soundcloud: SoundCloudConfig
    s3: S3Config
    agent: AgentConfig = AgentConfig()
    cloudwatch: CloudWatchConfig = CloudWatchConfig()


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or fix its spelling",
    "greater_than_equal": "raise it",
    "less_than_equal": "lower it",
    "greater_than": "raise it",
    "too_short": "add a value",
}


def _one_line(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key; remove it or fix its spelling"
    message = error["msg"].removeprefix("Value error, ")
    fix = _FIXES.get(kind)
    return f"{key}: {message}" + (f"; {fix}" if fix and kind != "missing" else "")


def config_path(cli_value: str | None) -> Path:
    """The config path: ``--config``, else ``$SC2S3_CONFIG``, else /etc/sc2s3/config.toml."""
    return Path(cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at ``path``.

    :raises ConfigError: one line naming the key and the fix (file missing, TOML syntax, invalid value).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror}); pass --config PATH") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelled section also makes the real one "missing": name the typo first.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        if first["type"] == "missing":
            key = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"{path}: {key}: required key is missing; add it") from exc
        raise ConfigError(f"{path}: {_one_line(first)}") from exc
