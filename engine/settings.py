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
TAESDXL = "madebyollin/taesdxl"
BATCH_BUCKETS = (1, 2, 4, 8, 16)
DRAFT_DECODERS = ("tiny", "full")


class SettingsError(ValueError):
    """A setting has a value the engine cannot use; the message names the variable."""


def default_cache_dir() -> Path:
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
    # VAE that does not overflow in float16, used by every model (finals decode in float16 with it);
    # empty = each model's own VAE, upcast to float32 for the decode as diffusers does.
    vae_model: str = VAE_FP16_FIX
    # The cheap decoder (TAESDXL, diffusers AutoencoderTiny) for drafts and the live previews of finals.
    draft_vae_model: str = TAESDXL
    draft_decoder: Literal["tiny", "full"] = "tiny"  # full: drafts decode with the full VAE
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    memory: Literal["auto", "resident", "offload"] = "auto"
    cache_dir: Path = default_cache_dir()
    final_model: str = "ssd-1b"  # default model for finals
    draft_steps: int = 1
    final_steps: int = 28
    final_guidance_ssd1b: float = 7.0
    final_guidance_sdxl: float = 6.0
    refiner_split: float = 0.8
    upscale_strength: float = 0.5
    max_batch_images: int = 16  # drafts merged into one GPU batch, in images
    gather_ms: float = 4.0  # a draft waits this long for others to join its batch (0 = take what is queued)
    prompt_cache_size: int = 64  # prompt embeddings kept (LRU) per engine; 0 = encode every time
    fast_kernels: bool = True  # channels-last UNet/VAE and fused QKV projections (float noise only)
    compile: bool | None = None  # torch.compile the UNets and decoders; None = on for CUDA, off elsewhere
    compile_mode: str = ""  # "" = reduce-overhead (CUDA graphs per batch bucket) on CUDA, default elsewhere
    compile_backend: str = "inductor"
    compile_cache_dir: Path | None = None  # persistent compile cache; None = cache_dir / "compile"
    compile_models: str = "turbo,ssd-1b,sdxl-base,sdxl-refiner"  # whose UNets compile (turbo: its decoder too)
    # Explicit CUDA graphs of the Turbo UNet and the draft decoder per batch bucket, when compile is off
    # (compile's reduce-overhead mode records its own). None = on for CUDA; never when offloading.
    cuda_graphs: bool | None = None
    # Finals: classifier-free guidance stops for the last share of the schedule (0 = never; 0.2 = last 20%).
    guidance_cutoff: float = 0.0
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
            "draft_vae_model": "DRAFT_VAE_MODEL",
            "draft_decoder": "DRAFT_DECODER",
            "gather_ms": "ENGINE_GATHER_MS",
            "prompt_cache_size": "ENGINE_PROMPT_CACHE",
            "fast_kernels": "ENGINE_FAST_KERNELS",
            "compile": "ENGINE_COMPILE",
            "compile_mode": "ENGINE_COMPILE_MODE",
            "compile_backend": "ENGINE_COMPILE_BACKEND",
            "compile_cache_dir": "ENGINE_COMPILE_CACHE_DIR",
            "compile_models": "ENGINE_COMPILE_MODELS",
            "cuda_graphs": "ENGINE_CUDA_GRAPHS",
            "guidance_cutoff": "GUIDANCE_CUTOFF",
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
                elif kind in ("bool", "bool | None"):
                    if kind == "bool | None" and raw.lower() == "auto":
                        changes[attr] = None
                        continue
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(raw)
                    changes[attr] = raw.lower() in ("1", "true", "yes", "on")
                elif kind in ("Path", "Path | None"):
                    changes[attr] = Path(raw).expanduser()
                elif attr in ("vae_model", "draft_vae_model") and raw.lower() in ("none", "off"):
                    changes[attr] = ""  # each model's own VAE (vae_model), or no TAESDXL at all
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
                vae_model="",
                draft_vae_model="tiny:taesdxl",
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
        if self.draft_decoder not in DRAFT_DECODERS:
            raise SettingsError(f"DRAFT_DECODER={self.draft_decoder!r}: use one of {', '.join(DRAFT_DECODERS)}.")
        if not (0.0 <= self.gather_ms <= 1000.0):
            raise SettingsError("ENGINE_GATHER_MS must be 0 to 1000.")
        if self.prompt_cache_size < 0:
            raise SettingsError("ENGINE_PROMPT_CACHE must be 0 (off) or more.")
        if self.compile_mode not in ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise SettingsError(
                f"ENGINE_COMPILE_MODE={self.compile_mode!r}: use default, reduce-overhead or max-autotune."
            )
        unknown = [m for m in self.compiled_models() if m not in HUB_MODELS]
        if unknown:
            known = ", ".join(HUB_MODELS)
            raise SettingsError(f"ENGINE_COMPILE_MODELS: unknown model(s) {', '.join(unknown)}; use {known}.")
        if not (0.0 <= self.guidance_cutoff < 1.0):
            raise SettingsError("GUIDANCE_CUTOFF must be at least 0 and below 1.")
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

    def batch_bucket(self, images: int) -> int:
        """The batch size ``images`` runs at when shapes must be fixed (compiled graphs): the next bucket up."""
        for bucket in BATCH_BUCKETS:
            if images <= bucket:
                return bucket
        top = BATCH_BUCKETS[-1]
        return -(-images // top) * top

    def compile_on(self, device: str) -> bool:
        return self.compile if self.compile is not None else device.startswith("cuda")

    def compiled_models(self) -> list[str]:
        return [m.strip() for m in self.compile_models.split(",") if m.strip()]

    def compile_cache(self) -> Path:
        return Path(self.compile_cache_dir) if self.compile_cache_dir else Path(self.cache_dir) / "compile"

    def final_guidance(self, model: str) -> float:
        return self.final_guidance_sdxl if model == "sdxl" else self.final_guidance_ssd1b
