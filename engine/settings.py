"""Engine settings, read from the environment (the bot loads `.env` first).

Every name here is documented in `.env.example`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

PRESETS = ("sdxl", "tiny")
MEMORY_MODES = ("auto", "resident", "offload")

HUB_MODELS = {
    "turbo": "stabilityai/sdxl-turbo",
    "ssd-1b": "segmind/SSD-1B",
    "sdxl-base": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
}
VAE_FP16_FIX = "madebyollin/sdxl-vae-fp16-fix"


class SettingsError(ValueError):
    """A setting has a value the engine cannot use; the message names the variable."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagine-bot"


@dataclass(frozen=True)
class EngineSettings:
    preset: Literal["sdxl", "tiny"] = "sdxl"
    # Hub ids or local folders (diffusers layout).
    turbo_model: str = HUB_MODELS["turbo"]
    ssd1b_model: str = HUB_MODELS["ssd-1b"]
    sdxl_base_model: str = HUB_MODELS["sdxl-base"]
    sdxl_refiner_model: str = HUB_MODELS["sdxl-refiner"]
    # Optional VAE that does not overflow in float16 (e.g. madebyollin/sdxl-vae-fp16-fix); empty = upcast the decode.
    vae_model: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    memory: Literal["auto", "resident", "offload"] = "auto"
    cache_dir: Path = _default_cache_dir()
    final_model: str = "ssd-1b"  # default model for finals
    draft_steps: int = 1
    final_steps: int = 28
    final_guidance_ssd1b: float = 7.0
    final_guidance_sdxl: float = 6.0
    refiner_split: float = 0.8
    upscale_strength: float = 0.5
    max_batch_images: int = 8  # drafts merged into one GPU batch, in images
    queue_max: int = 200  # waiting jobs, all users together
    preview_every: int = 5  # finals: a rough preview of the latents every N steps (0 = off)
    preload: bool = True  # load the draft and default final model at start, not at the first request
    final_not_starved_after_s: float = 20.0  # a waiting final runs before further drafts after this long

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EngineSettings:
        """Build settings from ``env`` (default ``os.environ``); the tiny preset changes some defaults."""
        env = dict(os.environ if env is None else env)
        preset = env.get("ENGINE_PRESET", "sdxl").strip().lower() or "sdxl"
        if preset not in PRESETS:
            raise SettingsError(f"ENGINE_PRESET={preset!r}: use one of {', '.join(PRESETS)}.")
        base = cls.for_preset(preset)
        names = {
            "turbo_model": "TURBO_MODEL",
            "ssd1b_model": "SSD1B_MODEL",
            "sdxl_base_model": "SDXL_BASE_MODEL",
            "sdxl_refiner_model": "SDXL_REFINER_MODEL",
            "vae_model": "VAE_MODEL",
            "device": "ENGINE_DEVICE",
            "memory": "ENGINE_MEMORY",
            "cache_dir": "ENGINE_CACHE_DIR",
            "final_model": "FINAL_MODEL",
            "draft_steps": "DRAFT_STEPS",
            "final_steps": "FINAL_STEPS",
            "refiner_split": "REFINER_SPLIT",
            "upscale_strength": "UPSCALE_STRENGTH",
            "max_batch_images": "ENGINE_MAX_BATCH",
            "queue_max": "ENGINE_QUEUE_MAX",
            "preview_every": "PREVIEW_EVERY",
            "preload": "ENGINE_PRELOAD",
        }
        types = {f.name: f.type for f in fields(cls)}
        changes: dict[str, object] = {}
        for attr, var in names.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            raw = raw.strip()
            kind = types[attr]
            try:
                if kind == "int":
                    changes[attr] = int(raw)
                elif kind == "float":
                    changes[attr] = float(raw)
                elif kind == "bool":
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(raw)
                    changes[attr] = raw.lower() in ("1", "true", "yes", "on")
                elif kind == "Path":
                    changes[attr] = Path(raw).expanduser()
                else:
                    changes[attr] = raw
            except ValueError:
                raise SettingsError(f"{var}={raw!r} is not a valid {kind}.") from None
        return replace(base, **changes).validate()

    @classmethod
    def for_preset(cls, preset: str, **changes: object) -> EngineSettings:
        """Defaults of a preset. ``tiny`` points every model at tiny random pipelines built locally."""
        settings = cls(preset=preset)  # type: ignore[arg-type]
        if preset == "tiny":
            # Tiny random models: every code path runs, fast on a CPU. Few final steps keep tests quick.
            settings = replace(
                settings,
                turbo_model="tiny:turbo",
                ssd1b_model="tiny:ssd-1b",
                sdxl_base_model="tiny:sdxl-base",
                sdxl_refiner_model="tiny:sdxl-refiner",
                final_steps=4,
            )
        return replace(settings, **changes).validate()

    def validate(self) -> EngineSettings:
        if self.memory not in MEMORY_MODES:
            raise SettingsError(f"ENGINE_MEMORY={self.memory!r}: use one of {', '.join(MEMORY_MODES)}.")
        if self.final_model not in ("ssd-1b", "sdxl"):
            raise SettingsError(f"FINAL_MODEL={self.final_model!r}: use ssd-1b or sdxl.")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise SettingsError(f"ENGINE_DEVICE={self.device!r}: use auto, cpu, cuda or cuda:N.")
        if not (1 <= self.draft_steps <= 4):
            raise SettingsError("DRAFT_STEPS must be 1 to 4.")
        if not (1 <= self.final_steps <= 100):
            raise SettingsError("FINAL_STEPS must be 1 to 100.")
        if not (0.5 <= self.refiner_split < 1.0):
            raise SettingsError("REFINER_SPLIT must be at least 0.5 and below 1.")
        if not (0.05 <= self.upscale_strength <= 1.0):
            raise SettingsError("UPSCALE_STRENGTH must be 0.05 to 1.")
        if not (1 <= self.max_batch_images <= 64):
            raise SettingsError("ENGINE_MAX_BATCH must be 1 to 64.")
        if self.queue_max < 1:
            raise SettingsError("ENGINE_QUEUE_MAX must be at least 1.")
        if self.preview_every < 0:
            raise SettingsError("PREVIEW_EVERY must be 0 (off) or more.")
        return self

    def model_source(self, name: str) -> str:
        """Hub id, local folder or ``tiny:NAME`` of a model by its engine name."""
        return {
            "turbo": self.turbo_model,
            "ssd-1b": self.ssd1b_model,
            "sdxl-base": self.sdxl_base_model,
            "sdxl-refiner": self.sdxl_refiner_model,
        }[name]

    def final_guidance(self, model: str) -> float:
        return self.final_guidance_sdxl if model == "sdxl" else self.final_guidance_ssd1b
