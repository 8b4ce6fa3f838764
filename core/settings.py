"""Bot settings, read from the environment and ``.env`` (``engine.settings_base``, through ``engine.api``).

Every variable here is documented in ``.env.example``. Engine settings (``ENGINE_PRESET``,
model ids, device, memory mode) live in ``engine.settings``; this module holds what the
Discord side needs, and which engine it talks to (``ENGINE_BACKEND``, ``ENGINE_URL``, ``ENGINE_TOKEN``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import discord
import discord.gateway
import discord.http
import yarl
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from engine.api import MAX_DRAFT_SIDE, MAX_SIDE, MIN_SIDE, SIDE_STEP, EnvSettings, SettingsError

TOKEN_SOURCE = (
    "your bot's token (https://discord.com/developers/applications -> your app -> Bot -> Reset Token), "
    "as DISCORD_TOKEN=<token> in .env (see .env.example)"
)
TOKEN_HELP = f"DISCORD_TOKEN is not set: use {TOKEN_SOURCE}."  # the line a missing token gives


class BotSettings(EnvSettings):
    token: SecretStr = Field(validation_alias="DISCORD_TOKEN", description=TOKEN_SOURCE)
    # Sync commands to this one server at once (development); None = global commands.
    guild_id: int | None = Field(
        default=None,
        gt=0,
        validation_alias="DISCORD_GUILD_ID",
        description="a server id (turn on Developer Mode, right-click the server -> Copy Server ID), "
        "or leave it empty for global commands",
    )
    # The servers the bot serves (core.guilds); empty = every server it is in.
    allowed_guilds: frozenset[int] = Field(
        default=frozenset(),
        validation_alias="ALLOWED_GUILDS",
        description="server ids separated by commas (Developer Mode, right-click the server -> Copy Server ID)",
    )
    # Leave the servers outside ALLOWED_GUILDS (when added, and at start) instead of only ignoring them.
    leave_unlisted_guilds: bool = Field(default=False, validation_alias="LEAVE_UNLISTED_GUILDS")
    database_path: Path = Field(default=Path("data/history.sqlite3"), validation_alias="DATABASE_PATH")
    # REST base (".../api/v10") and gateway URL of a proxy or a test server; None = Discord's own.
    api_base: str | None = Field(default=None, validation_alias="DISCORD_API_BASE")
    gateway_url: str | None = Field(default=None, validation_alias="DISCORD_GATEWAY_URL")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="LOG_LEVEL", description="one of DEBUG, INFO, WARNING, ERROR"
    )
    # Image channels read plain messages: needs the privileged Message Content intent.
    message_content: bool = Field(default=True, validation_alias="DISCORD_MESSAGE_CONTENT")
    sync_commands: bool = Field(default=True, validation_alias="DISCORD_SYNC_COMMANDS")
    # Side of a square draft / final; other aspects keep about the same pixel count.
    draft_size: int = Field(
        default=512,
        ge=MIN_SIDE,
        le=MAX_DRAFT_SIDE,
        multiple_of=SIDE_STEP,
        validation_alias="DRAFT_SIZE",
        description=f"a multiple of {SIDE_STEP} from {MIN_SIDE} to {MAX_DRAFT_SIDE}",
    )
    final_size: int = Field(
        default=1024,
        ge=512,  # finals below 512 px are not worth a final model's time
        le=MAX_SIDE,
        multiple_of=SIDE_STEP,
        validation_alias="FINAL_SIZE",
        description=f"a multiple of {SIDE_STEP} from 512 to {MAX_SIDE}",
    )
    # Jobs one prompt's {a, b} choices may make at once.
    max_permutations: int = Field(default=4, ge=1, le=25, validation_alias="MAX_PERMUTATIONS", description="1 to 25")
    # Seconds the running job may take to finish on SIGTERM/SIGINT.
    shutdown_timeout: float = Field(
        default=30.0, ge=0.0, le=3600.0, validation_alias="SHUTDOWN_TIMEOUT", description="0 to 3600 seconds"
    )
    # At most one progress edit per message this often, in seconds.
    progress_interval: float = Field(
        default=1.0, ge=0.2, le=60.0, validation_alias="PROGRESS_INTERVAL", description="0.2 to 60 seconds"
    )
    # How often a waiting job's queue position is checked.
    queue_update_interval: float = Field(
        default=3.0, ge=0.5, le=300.0, validation_alias="QUEUE_UPDATE_INTERVAL", description="0.5 to 300 seconds"
    )
    # Stored upload and result images (data/inputs, data/results): removed after this many days (0: kept),
    # and the oldest removed while all of them take more than this many MiB (0: no cap).
    image_retention_days: float = Field(
        default=30.0, ge=0.0, le=36500.0, validation_alias="IMAGE_RETENTION_DAYS", description="0 (keep) to 36500 days"
    )
    image_store_max_mb: int = Field(
        default=2048, ge=0, validation_alias="IMAGE_STORE_MAX_MB", description="0 (no cap) or more MiB"
    )
    # Bytes of images (uploads, canvases) one member may add to that store per hour, in MB (0: no limit).
    upload_mb_per_hour: int = Field(
        default=200, ge=0, validation_alias="UPLOAD_MB_PER_HOUR", description="0 (no limit) or more MB"
    )
    # Log finals to this Weights & Biases project (core.runlog); None = off.
    wandb_project: str | None = Field(default=None, validation_alias="WANDB_PROJECT")
    # Which engine bot.py builds: "local" (in this process) or "ray" (a Ray Serve cluster at engine_url).
    engine_backend: Literal["local", "ray"] = Field(
        default="local",
        validation_alias="ENGINE_BACKEND",
        description="local (the engine in this process) or ray (a Ray Serve cluster)",
    )
    engine_url: str | None = Field(default=None, validation_alias="ENGINE_URL")
    engine_token: SecretStr | None = Field(default=None, validation_alias="ENGINE_TOKEN")  # the cluster's secret

    @field_validator("log_level", "engine_backend", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("allowed_guilds", mode="before")
    @classmethod
    def _server_ids(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        ids = [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
        bad = [part for part in ids if not part.isdigit() or int(part) <= 0]
        if bad:
            raise SettingsError(f"ALLOWED_GUILDS: {bad[0]!r} is not a server id (a number, e.g. 123456789012345678).")
        return frozenset(int(part) for part in ids)

    @field_validator("database_path")
    @classmethod
    def _expand(cls, path: Path) -> Path:
        return path.expanduser()

    @field_validator("api_base")
    @classmethod
    def _rest_url(cls, base: str | None) -> str | None:
        if base is not None and not base.startswith(("http://", "https://")):
            raise SettingsError(f"DISCORD_API_BASE={base!r} must start with http:// or https://.")
        return base.rstrip("/") if base is not None else None

    @field_validator("gateway_url")
    @classmethod
    def _gateway_url(cls, gateway: str | None) -> str | None:
        if gateway is not None and not gateway.startswith(("ws://", "wss://")):
            raise SettingsError(f"DISCORD_GATEWAY_URL={gateway!r} must start with ws:// or wss://.")
        return gateway

    @field_validator("engine_url")
    @classmethod
    def _engine_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise SettingsError(
                f"ENGINE_URL={url!r} must start with http:// or https:// "
                "(the address `python -m engine serve` printed)."
            )
        return url.rstrip("/") if url is not None else None

    @model_validator(mode="after")
    def _cluster_named(self) -> BotSettings:
        if self.engine_backend == "ray" and self.engine_url is None:
            raise SettingsError(
                "ENGINE_BACKEND=ray needs ENGINE_URL: the address `python -m engine serve` printed "
                "(e.g. http://127.0.0.1:8000)."
            )
        return self

    @property
    def log_level_number(self) -> int:
        return int(getattr(logging, self.log_level))


def apply_endpoints(settings: BotSettings) -> None:
    """Point discord.py's REST and gateway at ``DISCORD_API_BASE`` / ``DISCORD_GATEWAY_URL`` when set.

    ``Route.BASE`` is read whenever a request is built (interaction webhooks included) and a
    plain ``Client`` connects straight to ``DEFAULT_GATEWAY``, so these two are all it takes.
    """
    if settings.api_base is not None:
        discord.http.Route.BASE = settings.api_base
    if settings.gateway_url is not None:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
