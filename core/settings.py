"""Bot settings, read from the environment (``bot.py`` loads ``.env`` into it first).

Every name here is documented in ``.env.example``. Engine settings (``ENGINE_PRESET``,
model ids, device, memory mode) live in ``engine.settings``; this module holds what the
Discord side needs, and which engine it talks to (``ENGINE_BACKEND``, ``ENGINE_URL``, ``ENGINE_TOKEN``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import discord
import discord.gateway
import discord.http
import yarl

TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Get one at https://discord.com/developers/applications -> your app -> "
    "Bot -> Reset Token, then put DISCORD_TOKEN=<token> in .env (see .env.example)."
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENGINE_BACKENDS = ("local", "ray")


class SettingsError(ValueError):
    """A setting is missing or has a value the bot cannot use; the message names the variable."""


@dataclass(frozen=True)
class BotSettings:
    token: str = field(repr=False)
    # Sync commands to this one server at once (development); None = global commands.
    guild_id: int | None = None
    database_path: Path = Path("data/history.sqlite3")
    # REST base (".../api/v10") and gateway URL of a proxy or a test server; None = Discord's own.
    api_base: str | None = None
    gateway_url: str | None = None
    log_level: str = "INFO"
    # Image channels read plain messages: needs the privileged Message Content intent.
    message_content: bool = True
    sync_commands: bool = True
    draft_size: int = 512  # side of a square draft; other aspects keep about the same pixel count
    final_size: int = 1024
    max_permutations: int = 4  # jobs one prompt's {a, b} choices may make at once (MAX_PERMUTATIONS)
    shutdown_timeout: float = 30.0  # seconds the running job may take to finish on SIGTERM/SIGINT
    progress_interval: float = 1.0  # at most one progress edit per message this often, in seconds
    queue_update_interval: float = 3.0  # how often a waiting job's queue position is checked
    # Stored upload and result images (data/inputs, data/results): removed after this many days (0: kept),
    # and the oldest removed while all of them take more than this many MiB (0: no cap).
    image_retention_days: float = 30.0
    image_store_max_mb: int = 2048
    wandb_project: str | None = None  # log finals to this Weights & Biases project (core.runlog); None = off
    # Which engine bot.py builds: "local" (in this process) or "ray" (a Ray Serve cluster at engine_url).
    engine_backend: str = "local"
    engine_url: str | None = None
    engine_token: str | None = field(default=None, repr=False)  # the cluster's shared secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BotSettings:
        """Build settings from ``env`` (default ``os.environ``). Raises SettingsError with one clear line."""
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            raw = env.get(name)
            return raw.strip() if raw is not None and raw.strip() else None

        token = text("DISCORD_TOKEN")
        if token is None:
            raise SettingsError(TOKEN_HELP)
        changes: dict[str, object] = {"token": token}

        guild = text("DISCORD_GUILD_ID")
        if guild is not None:
            if not guild.isdigit():
                raise SettingsError(
                    f"DISCORD_GUILD_ID={guild!r} is not a server id (a number: turn on Developer Mode, "
                    "right-click the server -> Copy Server ID), or leave it empty for global commands."
                )
            changes["guild_id"] = int(guild)

        if (path := text("DATABASE_PATH")) is not None:
            changes["database_path"] = Path(path).expanduser()

        if (base := text("DISCORD_API_BASE")) is not None:
            if not base.startswith(("http://", "https://")):
                raise SettingsError(f"DISCORD_API_BASE={base!r} must start with http:// or https://.")
            changes["api_base"] = base.rstrip("/")
        if (gateway := text("DISCORD_GATEWAY_URL")) is not None:
            if not gateway.startswith(("ws://", "wss://")):
                raise SettingsError(f"DISCORD_GATEWAY_URL={gateway!r} must start with ws:// or wss://.")
            changes["gateway_url"] = gateway

        if (level := text("LOG_LEVEL")) is not None:
            if level.upper() not in LOG_LEVELS:
                raise SettingsError(f"LOG_LEVEL={level!r}: use one of {', '.join(LOG_LEVELS)}.")
            changes["log_level"] = level.upper()

        for attr, name in (("message_content", "DISCORD_MESSAGE_CONTENT"), ("sync_commands", "DISCORD_SYNC_COMMANDS")):
            if (raw := text(name)) is not None:
                changes[attr] = _bool(name, raw)

        for attr, name, low, high in (("draft_size", "DRAFT_SIZE", 256, 1024), ("final_size", "FINAL_SIZE", 512, 2048)):
            if (raw := text(name)) is not None:
                value = _number(name, raw, int)
                if value % 64 or not (low <= value <= high):
                    raise SettingsError(f"{name}={raw!r} must be a multiple of 64 from {low} to {high}.")
                changes[attr] = value

        if (raw := text("MAX_PERMUTATIONS")) is not None:
            count = _number("MAX_PERMUTATIONS", raw, int)
            if not (1 <= count <= 25):
                raise SettingsError(f"MAX_PERMUTATIONS={raw!r} must be 1 (no permutations) to 25 jobs.")
            changes["max_permutations"] = count

        for attr, name, low, high in (
            ("shutdown_timeout", "SHUTDOWN_TIMEOUT", 0.0, 3600.0),
            ("progress_interval", "PROGRESS_INTERVAL", 0.2, 60.0),
            ("queue_update_interval", "QUEUE_UPDATE_INTERVAL", 0.5, 300.0),
        ):
            if (raw := text(name)) is not None:
                value = _number(name, raw, float)
                if not (low <= value <= high):
                    raise SettingsError(f"{name}={raw!r} must be {low:g} to {high:g} seconds.")
                changes[attr] = value

        if (raw := text("IMAGE_RETENTION_DAYS")) is not None:
            days = _number("IMAGE_RETENTION_DAYS", raw, float)
            if not (0 <= days <= 36500):
                raise SettingsError(f"IMAGE_RETENTION_DAYS={raw!r} must be 0 (keep) to 36500 days.")
            changes["image_retention_days"] = days
        if (raw := text("IMAGE_STORE_MAX_MB")) is not None:
            cap = _number("IMAGE_STORE_MAX_MB", raw, int)
            if cap < 0:
                raise SettingsError(f"IMAGE_STORE_MAX_MB={raw!r} must be 0 (no cap) or more MiB.")
            changes["image_store_max_mb"] = cap

        if (project := text("WANDB_PROJECT")) is not None:
            changes["wandb_project"] = project

        if (backend := text("ENGINE_BACKEND")) is not None:
            if backend.lower() not in ENGINE_BACKENDS:
                raise SettingsError(
                    f"ENGINE_BACKEND={backend!r}: use local (the engine in this process) or ray (a Ray Serve cluster)."
                )
            changes["engine_backend"] = backend.lower()
        if (url := text("ENGINE_URL")) is not None:
            if not url.startswith(("http://", "https://")):
                raise SettingsError(
                    f"ENGINE_URL={url!r} must start with http:// or https:// "
                    "(the address `python -m engine serve` printed)."
                )
            changes["engine_url"] = url.rstrip("/")
        if (secret := text("ENGINE_TOKEN")) is not None:
            changes["engine_token"] = secret
        if changes.get("engine_backend") == "ray" and "engine_url" not in changes:
            raise SettingsError(
                "ENGINE_BACKEND=ray needs ENGINE_URL: the address `python -m engine serve` printed "
                "(e.g. http://127.0.0.1:8000)."
            )

        return cls(**changes)  # type: ignore[arg-type]

    @property
    def log_level_number(self) -> int:
        return getattr(logging, self.log_level)


def _bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: use true or false.")


def _number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {'whole number' if kind is int else 'number'}.") from None


def apply_endpoints(settings: BotSettings) -> None:
    """Point discord.py's REST and gateway at ``DISCORD_API_BASE`` / ``DISCORD_GATEWAY_URL`` when set.

    ``Route.BASE`` is read whenever a request is built (interaction webhooks included) and a
    plain ``Client`` connects straight to ``DEFAULT_GATEWAY``, so these two are all it takes.
    """
    if settings.api_base is not None:
        discord.http.Route.BASE = settings.api_base
    if settings.gateway_url is not None:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
