"""Settings of the optional model add-ons (LoRA, image reference, upscaler, describe), read from the environment.

Each add-on is off, or points at a hub id or a local path. ``tiny:NAME`` sources are built by
:func:`engine.addons.tiny.ensure_tiny_addons` under ``cache_dir`` (the tiny preset), so tests load
them through the same code as real weights. Build once at start with :meth:`AddonSettings.from_env`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..settings import default_cache_dir

log = logging.getLogger(__name__)

REFERENCE_HUB = "h94/IP-Adapter"
DESCRIBE_HUB = "Salesforce/blip-image-captioning-large"
OFF_VALUES = ("", "off", "none", "0", "false", "no")


class AddonSettingsError(ValueError):
    """An add-on variable has a value the engine cannot use; the message names the variable."""


class AddonMissing(RuntimeError):
    """An add-on is configured but its weights are not on disk; the message is one line saying what to do."""


@dataclass(frozen=True)
class AddonSettings:
    """Where each add-on's weights come from ("" = the add-on is off) and how the upscaler tiles."""

    cache_dir: Path = default_cache_dir()
    # LoRA: a local folder of SDXL LoRA .safetensors files, and/or hub ids ("owner/repo" or
    # "owner/repo/file.safetensors"); the names members pick are the file stems (repo name for a bare repo).
    lora_dir: str = ""
    lora_hub: tuple[str, ...] = ()
    # Image reference: IP-Adapter for SDXL (hub id or local folder with the same layout).
    reference_model: str = REFERENCE_HUB
    reference_subfolder: str = "sdxl_models"
    reference_weight_name: str = "ip-adapter_sdxl.safetensors"
    reference_image_encoder: str = "image_encoder"  # relative to the subfolder, as load_ip_adapter takes it
    # Upscale 2x: an ESRGAN-family .safetensors (local path or "owner/repo/file.safetensors"); "" = Lanczos.
    upscaler_model: str = ""
    upscale_tile: int = 1024  # creative pass: img2img tile size in output pixels (multiple of 8)
    upscale_overlap: int = 128  # creative pass: overlap of neighbouring tiles, feathered
    upscale_strength: float = 0.3  # creative pass: img2img strength (low keeps the composition)
    upscale_steps: int = 20  # creative pass: scheduler steps before strength (20 x 0.3 = 6 run)
    upscaler_tile: int = 512  # subtle pass: input tile size for the ESRGAN model (bounds its memory)
    # Describe: an image-captioning model (BLIP) through transformers; "" = /describe is off.
    describe_model: str = DESCRIBE_HUB

    @classmethod
    def for_tiny(cls, cache_dir: Path, **changes) -> AddonSettings:
        """Every add-on on, with tiny random weights built under ``cache_dir``."""
        tiny = cls(
            cache_dir=Path(cache_dir),
            lora_dir="tiny:loras",
            reference_model="tiny:ip-adapter",
            reference_weight_name="ip-adapter_tiny.safetensors",
            upscaler_model="tiny:upscaler/tiny-realesrgan-x4.safetensors",
            upscale_tile=128,
            upscale_overlap=32,
            upscale_steps=4,
            upscale_strength=0.5,
            upscaler_tile=64,
            describe_model="tiny:describe",
        )
        return replace(tiny, **changes).validate()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AddonSettings:
        """Read the ``LORA_*``, ``REFERENCE_*``, ``UPSCALER_*``/``UPSCALE_*`` and ``DESCRIBE_MODEL`` variables.

        ``ENGINE_PRESET=tiny`` starts from :meth:`for_tiny` (in ``ENGINE_CACHE_DIR``), so the tiny
        bot has every add-on without downloads.
        """
        env = dict(os.environ if env is None else env)
        cache_raw = (env.get("ENGINE_CACHE_DIR") or "").strip()
        cache_dir = Path(cache_raw).expanduser() if cache_raw else default_cache_dir()
        preset = (env.get("ENGINE_PRESET") or "sdxl").strip().lower()
        base = cls.for_tiny(cache_dir) if preset == "tiny" else cls(cache_dir=cache_dir)
        names = {
            "lora_dir": "LORA_DIR",
            "lora_hub": "LORA_HUB",
            "reference_model": "REFERENCE_MODEL",
            "reference_subfolder": "REFERENCE_SUBFOLDER",
            "reference_weight_name": "REFERENCE_WEIGHT_NAME",
            "reference_image_encoder": "REFERENCE_IMAGE_ENCODER",
            "upscaler_model": "UPSCALER_MODEL",
            "upscale_tile": "UPSCALE_TILE",
            "upscale_overlap": "UPSCALE_OVERLAP",
            "upscale_strength": "UPSCALE_CREATIVE_STRENGTH",
            "upscale_steps": "UPSCALE_CREATIVE_STEPS",
            "upscaler_tile": "UPSCALER_TILE",
            "describe_model": "DESCRIBE_MODEL",
        }
        types = {f.name: f.type for f in fields(cls)}
        changes: dict[str, object] = {}
        for attr, var in names.items():
            raw = env.get(var)
            if raw is None:
                continue
            raw = raw.strip()
            kind = types[attr]
            try:
                if kind == "int":
                    changes[attr] = int(raw)
                elif kind == "float":
                    changes[attr] = float(raw)
                elif attr == "lora_hub":
                    changes[attr] = tuple(part.strip() for part in raw.split(",") if part.strip())
                else:
                    changes[attr] = "" if raw.lower() in OFF_VALUES else raw
            except ValueError:
                raise AddonSettingsError(f"{var}={raw!r} is not a valid {kind}.") from None
        return replace(base, **changes).validate()

    def validate(self) -> AddonSettings:
        if self.upscale_tile < 64 or self.upscale_tile % 8:
            raise AddonSettingsError(f"UPSCALE_TILE={self.upscale_tile}: use a multiple of 8, at least 64.")
        if not 0 <= self.upscale_overlap < self.upscale_tile // 2:
            raise AddonSettingsError(
                f"UPSCALE_OVERLAP={self.upscale_overlap}: use 0 up to less than half of "
                f"UPSCALE_TILE ({self.upscale_tile})."
            )
        if not 0.0 < self.upscale_strength <= 1.0:
            raise AddonSettingsError(f"UPSCALE_CREATIVE_STRENGTH={self.upscale_strength}: use a value in (0, 1].")
        if self.upscale_steps < 1:
            raise AddonSettingsError(f"UPSCALE_CREATIVE_STEPS={self.upscale_steps}: use at least 1.")
        if self.upscaler_tile < 16:
            raise AddonSettingsError(f"UPSCALER_TILE={self.upscaler_tile}: use at least 16.")
        for entry in self.lora_hub:
            if entry.count("/") < 1 or (entry.count("/") > 1 and not entry.endswith(".safetensors")):
                raise AddonSettingsError(
                    f"LORA_HUB entry {entry!r}: use owner/repo or owner/repo/file.safetensors (comma separated)."
                )
        return self

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


def addon_settings_for(settings, env: dict[str, str] | None = None) -> AddonSettings:
    """The add-on settings of an engine: the environment's ``LORA_*``/``REFERENCE_*``/... variables, with the
    engine's preset and cache folder (the tiny preset gets the tiny add-ons beside its tiny models)."""
    env = dict(os.environ if env is None else env)
    env["ENGINE_PRESET"] = settings.preset
    env["ENGINE_CACHE_DIR"] = str(settings.cache_dir)
    return AddonSettings.from_env(env)
