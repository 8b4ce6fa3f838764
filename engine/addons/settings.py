"""Settings of the optional model add-ons (LoRA, image reference, upscaler, describe), read from the environment.

Each add-on is off, or points at a hub id or a local path. ``tiny:NAME`` sources are built by
:func:`engine.addons.tiny.ensure_tiny_addons` under ``cache_dir`` (the tiny preset), so tests load
them through the same code as real weights. Build once at start with :meth:`AddonSettings.from_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ..settings import EngineSettings, default_cache_dir, expand_user
from ..settings_base import EnvSettings, SettingsError

REFERENCE_HUB = "h94/IP-Adapter"
DESCRIBE_HUB = "Salesforce/blip-image-captioning-large"
OFF_VALUES = ("", "off", "none", "0", "false", "no")
# Every add-on on, with tiny random weights built under the cache folder (the tiny preset).
TINY_ADDONS: dict[str, Any] = {
    "lora_dir": "tiny:loras",
    "reference_model": "tiny:ip-adapter",
    "reference_weight_name": "ip-adapter_tiny.safetensors",
    "upscaler_model": "tiny:upscaler/tiny-realesrgan-x4.safetensors",
    "upscale_tile": 128,
    "upscale_overlap": 32,
    "upscale_steps": 4,
    "upscale_strength": 0.5,
    "upscaler_tile": 256,  # small tiles spend most of their work on the padding around them
    "describe_model": "tiny:describe",
}


class AddonMissing(RuntimeError):
    """An add-on is configured but its weights are not on disk; the message is one line saying what to do."""


class AddonSettings(EnvSettings):
    """Where each add-on's weights come from ("" = the add-on is off) and how the upscaler tiles."""

    # A blank value (like off, none, 0, false or no) turns an add-on off: it does not mean "the default".
    model_config = SettingsConfigDict(env_ignore_empty=False)

    # The engine's preset and cache folder: the tiny preset gets every add-on, built under the cache folder.
    preset: Literal["sdxl", "tiny"] = Field(
        default="sdxl", validation_alias="ENGINE_PRESET", description="sdxl or tiny"
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, validation_alias="ENGINE_CACHE_DIR")
    # LoRA: a local folder of SDXL LoRA .safetensors files, and/or hub ids ("owner/repo" or
    # "owner/repo/file.safetensors", comma separated); the names members pick are the file stems (repo name
    # for a bare repo).
    lora_dir: str = Field(default="", validation_alias="LORA_DIR")
    lora_hub: tuple[str, ...] = Field(default=(), validation_alias="LORA_HUB")
    # LoRAs kept loaded per pipeline between jobs, least recently used evicted first (0 = none kept).
    lora_loaded_max: int = Field(default=4, ge=0, validation_alias="LORA_LOADED_MAX", description="0 or more")
    # Image reference: IP-Adapter for SDXL (hub id or local folder with the same layout).
    reference_model: str = Field(default=REFERENCE_HUB, validation_alias="REFERENCE_MODEL")
    reference_subfolder: str = Field(default="sdxl_models", validation_alias="REFERENCE_SUBFOLDER")
    reference_weight_name: str = Field(default="ip-adapter_sdxl.safetensors", validation_alias="REFERENCE_WEIGHT_NAME")
    # Relative to the subfolder, as load_ip_adapter takes it.
    reference_image_encoder: str = Field(default="image_encoder", validation_alias="REFERENCE_IMAGE_ENCODER")
    # Idle seconds after which the image encoder leaves the GPU (it stays in host memory).
    reference_encoder_idle_s: float = Field(
        default=300.0, ge=0.0, validation_alias="REFERENCE_ENCODER_IDLE_S", description="0 or more"
    )
    # Upscale 2x: an ESRGAN-family .safetensors (local path or "owner/repo/file.safetensors"); "" = Lanczos.
    upscaler_model: str = Field(default="", validation_alias="UPSCALER_MODEL")
    upscale_tile: int = Field(  # creative pass: img2img tile size in output pixels
        default=1024, ge=64, multiple_of=8, validation_alias="UPSCALE_TILE", description="a multiple of 8, at least 64"
    )
    upscale_overlap: int = Field(  # creative pass: overlap of neighbouring tiles, feathered
        default=128, ge=0, validation_alias="UPSCALE_OVERLAP", description="0 up to less than half of UPSCALE_TILE"
    )
    upscale_strength: float = Field(  # creative pass: img2img strength (low keeps the composition)
        default=0.3, gt=0.0, le=1.0, validation_alias="UPSCALE_CREATIVE_STRENGTH", description="a value in (0, 1]"
    )
    upscale_steps: int = Field(  # creative pass: scheduler steps before strength (20 x 0.3 = 6 run)
        default=20, ge=1, validation_alias="UPSCALE_CREATIVE_STEPS", description="at least 1"
    )
    upscaler_tile: int = Field(  # subtle pass: input tile size for the ESRGAN model (bounds its memory)
        default=512, ge=16, validation_alias="UPSCALER_TILE", description="at least 16"
    )
    # Describe: an image-captioning model (BLIP) through transformers; "" = /describe is off.
    describe_model: str = Field(default=DESCRIBE_HUB, validation_alias="DESCRIBE_MODEL")

    _expand = field_validator("cache_dir")(expand_user)

    @field_validator("preset", "cache_dir", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object, info: ValidationInfo) -> object:
        """A blank ENGINE_PRESET or ENGINE_CACHE_DIR means the engine's default, as it does for the engine."""
        if isinstance(value, str) and not value.strip():
            return "sdxl" if info.field_name == "preset" else default_cache_dir()
        return value.lower() if info.field_name == "preset" and isinstance(value, str) else value

    @field_validator(
        "lora_dir",
        "reference_model",
        "reference_subfolder",
        "reference_weight_name",
        "reference_image_encoder",
        "upscaler_model",
        "describe_model",
        mode="before",
    )
    @classmethod
    def _off(cls, value: object) -> object:
        return "" if isinstance(value, str) and value.strip().lower() in OFF_VALUES else value

    @field_validator("lora_hub", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("lora_hub")
    @classmethod
    def _hub_entries(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            if entry.count("/") < 1 or (entry.count("/") > 1 and not entry.endswith(".safetensors")):
                raise SettingsError(
                    f"LORA_HUB entry {entry!r}: use owner/repo or owner/repo/file.safetensors (comma separated)."
                )
        return entries

    @model_validator(mode="after")
    def _overlap_within_tile(self) -> AddonSettings:
        if self.upscale_overlap >= self.upscale_tile // 2:
            raise SettingsError(
                f"UPSCALE_OVERLAP={self.upscale_overlap}: use 0 up to less than half of "
                f"UPSCALE_TILE ({self.upscale_tile})."
            )
        return self

    @classmethod
    def for_tiny(cls, cache_dir: Path, **changes: Any) -> AddonSettings:
        """Every add-on on, with tiny random weights built under ``cache_dir``."""
        return cls.build({**TINY_ADDONS, "preset": "tiny", "cache_dir": Path(cache_dir), **changes})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AddonSettings:
        """Read the ``LORA_*``, ``REFERENCE_*``, ``UPSCALER_*``/``UPSCALE_*`` and ``DESCRIBE_MODEL`` variables.

        ``ENGINE_PRESET=tiny`` starts from :meth:`for_tiny` (in ``ENGINE_CACHE_DIR``), so the tiny
        bot has every add-on without downloads.
        """
        values = cls.read(env)
        tiny = str(values.get("preset", "")).strip().lower() == "tiny"
        return cls.build({**(TINY_ADDONS if tiny else {}), **values})

    def resolve_tiny(self, source: str) -> Path | None:
        """The local path of a ``tiny:NAME`` source (building the tiny add-ons once); None for other sources."""
        if not source.startswith("tiny:"):
            return None
        from .tiny import ensure_tiny_addons

        return ensure_tiny_addons(self.cache_dir) / source.removeprefix("tiny:")


def split_hub_file(source: str) -> tuple[str, str] | None:
    """``owner/repo/path/file.safetensors`` -> (``owner/repo``, ``path/file.safetensors``); None otherwise."""
    parts = source.split("/")
    if len(parts) >= 3 and source.endswith(".safetensors"):
        return "/".join(parts[:2]), "/".join(parts[2:])
    return None


def addon_settings_for(settings: EngineSettings, env: Mapping[str, str] | None = None) -> AddonSettings:
    """The add-on settings of an engine: the environment's ``LORA_*``/``REFERENCE_*``/... variables, with the
    engine's preset and cache folder (the tiny preset gets the tiny add-ons beside its tiny models)."""
    env = dict(os.environ if env is None else env)
    env["ENGINE_PRESET"] = settings.preset
    env["ENGINE_CACHE_DIR"] = str(settings.cache_dir)
    return AddonSettings.from_env(env)
