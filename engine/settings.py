"""Engine settings, read from the environment and ``.env`` (``engine.settings_base``).

Every variable here is documented in ``.env.example``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .settings_base import EnvSettings, SettingsError

HUB_MODELS = {
    "turbo": "stabilityai/sdxl-turbo",
    "ssd-1b": "segmind/SSD-1B",
    "sdxl-base": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
}
VAE_FP16_FIX = "madebyollin/sdxl-vae-fp16-fix"
TAESDXL = "madebyollin/taesdxl"
BATCH_BUCKETS = (1, 2, 4, 8, 16)
# The tiny preset: tiny random models built locally; every code path runs, fast on a CPU, and few final
# steps keep tests quick.
TINY_DEFAULTS: dict[str, Any] = {
    "turbo_model": "tiny:turbo",
    "ssd1b_model": "tiny:ssd-1b",
    "sdxl_base_model": "tiny:sdxl-base",
    "sdxl_refiner_model": "tiny:sdxl-refiner",
    "vae_model": "",
    "draft_vae_model": "tiny:taesdxl",
    "final_steps": 4,
}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagine-bot"


def lower(value: object) -> object:
    """Names of choices are read in any case (``ENGINE_PRESET=Tiny``)."""
    return value.lower() if isinstance(value, str) else value


def expand_user(value: Path | None) -> Path | None:
    return value.expanduser() if value is not None else None


class EngineSettings(EnvSettings):
    preset: Literal["sdxl", "tiny"] = Field(
        default="sdxl", validation_alias="ENGINE_PRESET", description="sdxl or tiny"
    )
    # Tiny preset only: "photo" adds per-pixel grain (engine.detail) so its PNGs are as large as real ones.
    tiny_detail: Literal["noise", "photo"] = Field(
        default="noise", validation_alias="ENGINE_TINY_DETAIL", description="noise or photo"
    )
    # Hub ids or local folders (diffusers layout).
    turbo_model: str = Field(default=HUB_MODELS["turbo"], validation_alias="TURBO_MODEL")
    ssd1b_model: str = Field(default=HUB_MODELS["ssd-1b"], validation_alias="SSD1B_MODEL")
    sdxl_base_model: str = Field(default=HUB_MODELS["sdxl-base"], validation_alias="SDXL_BASE_MODEL")
    sdxl_refiner_model: str = Field(default=HUB_MODELS["sdxl-refiner"], validation_alias="SDXL_REFINER_MODEL")
    # VAE that does not overflow in float16, used by every model (finals decode in float16 with it);
    # "" (none, off) = each model's own VAE, upcast to float32 for the decode as diffusers does.
    vae_model: str = Field(default=VAE_FP16_FIX, validation_alias="VAE_MODEL")
    # The cheap decoder (TAESDXL, diffusers AutoencoderTiny) for drafts and the live previews of finals.
    draft_vae_model: str = Field(default=TAESDXL, validation_alias="DRAFT_VAE_MODEL")
    draft_decoder: Literal["tiny", "full"] = Field(  # full: drafts decode with the full VAE
        default="tiny", validation_alias="DRAFT_DECODER", description="tiny or full"
    )
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        validation_alias="ENGINE_DEVICE",
        description="auto, cpu, cuda or cuda:N",
    )
    # Weights and activations: auto = float16 on a GPU (CUDA, MPS), float32 on the CPU. bfloat16 halves the
    # CPU's memory (full-size SDXL: about 7 GB instead of 14) on CPUs with bfloat16 kernels (AVX-512 BF16, AMX).
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", validation_alias="ENGINE_DTYPE", description="auto, float32, float16 or bfloat16"
    )
    memory: Literal["auto", "resident", "offload"] = Field(
        default="auto", validation_alias="ENGINE_MEMORY", description="auto, resident or offload"
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, validation_alias="ENGINE_CACHE_DIR")
    final_model: Literal["ssd-1b", "sdxl"] = Field(  # default model for finals
        default="ssd-1b", validation_alias="FINAL_MODEL", description="ssd-1b or sdxl"
    )
    draft_steps: int = Field(default=1, ge=1, le=4, validation_alias="DRAFT_STEPS", description="1 to 4")
    final_steps: int = Field(default=28, ge=1, le=100, validation_alias="FINAL_STEPS", description="1 to 100")
    # Set in code only (no variable): the classifier-free guidance of each final model.
    final_guidance_ssd1b: float = 7.0
    final_guidance_sdxl: float = 6.0
    refiner_split: float = Field(
        default=0.8, ge=0.5, lt=1.0, validation_alias="REFINER_SPLIT", description="at least 0.5 and below 1"
    )
    upscale_strength: float = Field(
        default=0.5, ge=0.05, le=1.0, validation_alias="UPSCALE_STRENGTH", description="0.05 to 1"
    )
    max_batch_images: int = Field(  # drafts merged into one GPU batch, in images
        default=16, ge=1, le=64, validation_alias="ENGINE_MAX_BATCH", description="1 to 64"
    )
    gather_ms: float = Field(  # a draft waits this long for others to join its batch (0 = take what is queued)
        default=4.0, ge=0.0, le=1000.0, validation_alias="ENGINE_GATHER_MS", description="0 to 1000"
    )
    # Threads writing PNGs (drafts at zlib level 1, finals at 4); the default is one per CPU core.
    encode_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=256,
        validation_alias="ENGINE_ENCODE_THREADS",
        description="1 to 256 (default: the CPU cores)",
    )
    prompt_cache_size: int = Field(  # prompt embeddings kept (LRU) per engine; 0 = encode every time
        default=64, ge=0, validation_alias="ENGINE_PROMPT_CACHE", description="0 (off) or more"
    )
    # Channels-last UNet/VAE (float noise only).
    fast_kernels: bool = Field(default=True, validation_alias="ENGINE_FAST_KERNELS")
    # Fused QKV projections: +1.30 GB Turbo, +0.59 GB SSD-1B (diffusers keeps the unfused ones) for ~0.6 %
    # speed; off until a GPU measurement says otherwise.
    fuse_qkv: bool = Field(default=False, validation_alias="ENGINE_FUSE_QKV")
    # torch.compile the UNets and decoders; None (auto) = off everywhere until a GPU measurement chooses it
    # (on CUDA explicit graphs, ENGINE_CUDA_GRAPHS, are the default: no minutes-long compile stalls).
    compile: bool | None = Field(default=None, validation_alias="ENGINE_COMPILE", description="true, false or auto")
    # "" = reduce-overhead (CUDA graphs per batch bucket) on CUDA, default elsewhere.
    compile_mode: Literal["", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        default="", validation_alias="ENGINE_COMPILE_MODE", description="default, reduce-overhead or max-autotune"
    )
    compile_backend: str = Field(default="inductor", validation_alias="ENGINE_COMPILE_BACKEND")
    # Persistent compile cache; None = cache_dir / "compile".
    compile_cache_dir: Path | None = Field(default=None, validation_alias="ENGINE_COMPILE_CACHE_DIR")
    # Whose UNets compile (turbo: its decoder too), comma separated.
    compile_models: str = Field(default="turbo,ssd-1b,sdxl-base,sdxl-refiner", validation_alias="ENGINE_COMPILE_MODELS")
    # Explicit CUDA graphs of the Turbo UNet and the draft decoder per batch bucket, when compile is off
    # (compile's reduce-overhead mode records its own). None (auto) = on for CUDA; offload mode drops them
    # when Turbo leaves the GPU for a final and captures them again after.
    # The local worker captures them while its queue is idle; a capture that fails runs that module eagerly.
    cuda_graphs: bool | None = Field(
        default=None, validation_alias="ENGINE_CUDA_GRAPHS", description="true, false or auto"
    )
    # Finals: classifier-free guidance stops for the last share of the schedule (0 = never; 0.2 = last 20%).
    guidance_cutoff: float = Field(
        default=0.0, ge=0.0, lt=1.0, validation_alias="GUIDANCE_CUTOFF", description="at least 0 and below 1"
    )
    queue_max: int = Field(  # waiting jobs, all users together
        default=200, ge=1, validation_alias="ENGINE_QUEUE_MAX", description="at least 1"
    )
    preview_every: int = Field(  # finals: a rough preview of the latents every N steps (0 = off)
        default=5, ge=0, validation_alias="PREVIEW_EVERY", description="0 (off) or more"
    )
    # Load the draft and default final model at start, not at the first request.
    preload: bool = Field(default=True, validation_alias="ENGINE_PRELOAD")
    # Set in code only: a waiting final runs before further drafts after this long (seconds).
    final_not_starved_after_s: float = 20.0

    _lower = field_validator("preset", "memory", "tiny_detail", "dtype", mode="before")(lower)
    _expand = field_validator("cache_dir", "compile_cache_dir")(expand_user)

    @field_validator("vae_model", "draft_vae_model", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        """none or off: each model's own VAE (vae_model), or no TAESDXL at all."""
        return "" if isinstance(value, str) and value.lower() in ("none", "off") else value

    @field_validator("compile", "cuda_graphs", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        return None if isinstance(value, str) and value.lower() == "auto" else value

    @field_validator("compile_models")
    @classmethod
    def _known_models(cls, value: str) -> str:
        unknown = [m for m in _names(value) if m not in HUB_MODELS]
        if unknown:
            known = ", ".join(HUB_MODELS)
            raise SettingsError(f"ENGINE_COMPILE_MODELS: unknown model(s) {', '.join(unknown)}; use {known}.")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EngineSettings:
        """Build settings from ``env`` (default: the environment over ``./.env``); the tiny preset changes some
        defaults. Raises SettingsError with one clear line."""
        values = cls.read(env)
        return cls.for_preset(values.pop("preset", "sdxl"), **values)

    @classmethod
    def for_preset(cls, preset: str, **changes: Any) -> EngineSettings:
        """Defaults of a preset, under ``changes``. ``tiny`` points every model at tiny random pipelines built
        locally."""
        defaults = TINY_DEFAULTS if str(lower(preset)) == "tiny" else {}
        return cls.build({**defaults, "preset": preset, **changes})

    def model_source(self, name: str) -> str:
        """Hub id, local folder or ``tiny:NAME`` of a model by its engine name."""
        return {
            "turbo": self.turbo_model,
            "ssd-1b": self.ssd1b_model,
            "sdxl-base": self.sdxl_base_model,
            "sdxl-refiner": self.sdxl_refiner_model,
        }[name]

    def batch_bucket(self, images: int) -> int:
        """The batch size ``images`` runs at when shapes must be fixed (compiled graphs): the next bucket up."""
        for bucket in BATCH_BUCKETS:
            if images <= bucket:
                return bucket
        top = BATCH_BUCKETS[-1]
        return -(-images // top) * top

    def compile_on(self, device: str) -> bool:
        """Whether models compile on ``device``: only when asked for (``ENGINE_COMPILE=true``), on any device."""
        return bool(self.compile)

    def compiled_models(self) -> list[str]:
        return _names(self.compile_models)

    def compile_cache(self) -> Path:
        return Path(self.compile_cache_dir) if self.compile_cache_dir else Path(self.cache_dir) / "compile"

    def final_guidance(self, model: str) -> float:
        return self.final_guidance_sdxl if model == "sdxl" else self.final_guidance_ssd1b


def _names(models: str) -> list[str]:
    return [m.strip() for m in models.split(",") if m.strip()]
