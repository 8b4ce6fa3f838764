"""The model folders both sides load: random-weight pipelines built and saved once (``--arch``), the
engine's settings pointing at them, and the folders the engine itself resolves each model to."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.meters import free_memory
from benchmarks.plan import MODELS, Plan, log


def build_random(arch: str, cache_dir: Path, init_std: float, device: str, half: bool | None = None,
                 models: tuple[str, ...] = MODELS) -> Path:
    """Random-weight pipelines of ``arch``, saved once; returns their root folder.

    Built by :mod:`benchmarks.architectures` (the code ``python -m benchmarks.fullsize`` runs through the engine on
    the CPU): each model on the meta device, then its weights made once on ``device`` directly in the saved dtype
    (no float32 copy), one model at a time. ``half`` (default: on CUDA) saves float16 weights as the ``fp16``
    variant, as the hub ships them. ``models`` saves only those (the GPU run saves Turbo and SSD-1B first, base +
    refiner when time is left).
    """
    from benchmarks.architectures import build_draft_decoder, build_pipeline, build_vae_fix

    half = device.startswith("cuda") if half is None else half
    variant = "fp16" if half else None
    dtype = "float16" if half else "float32"
    root = Path(cache_dir) / f"bench-{arch}-std{init_std:g}-{variant or 'fp32'}"
    started = time.perf_counter()
    for name in models:
        if not (root / name / "model_index.json").exists():
            log(f"building random {arch} {name} (init_std {init_std}, {dtype}) on {device} ...")
        build_pipeline(name, root / name, dtype=dtype, arch=arch, device=device, init_std=init_std)
        free_memory(device)
    build_draft_decoder(root / "taesdxl", dtype=dtype, arch=arch, device=device)
    build_vae_fix(root / "vae-fp16-fix", dtype=dtype, arch=arch, device=device, init_std=init_std)
    free_memory(device)
    log(f"  random {arch} pipelines ready under {root} ({time.perf_counter() - started:.0f} s)")
    return root


def engine_settings(args: argparse.Namespace, plan: Plan, root: Path | None):
    from engine.settings import EngineSettings

    base = EngineSettings.for_preset(args.preset if root is None else "sdxl")
    changes: dict[str, object] = {
        "device": plan.device,
        "memory": args.engine_memory,
        "final_model": "ssd-1b",
        "preload": True,
    }
    if args.cache_dir is not None:
        changes["cache_dir"] = args.cache_dir
    if root is not None:
        changes.update(
            turbo_model=str(root / "turbo"),
            ssd1b_model=str(root / "ssd-1b"),
            sdxl_base_model=str(root / "sdxl-base"),
            sdxl_refiner_model=str(root / "sdxl-refiner"),
            draft_vae_model=str(root / "taesdxl"),
            vae_model=str(root / "vae-fp16-fix"),
        )
    if args.max_batch is not None:
        changes["max_batch_images"] = args.max_batch
    if args.compile is not None:
        changes["compile"] = args.compile
    if args.compile_models is not None:
        changes["compile_models"] = args.compile_models
    return base.replace(**changes)


def resolve_folders(settings, plan: Plan) -> dict[str, Path]:
    """The folders the engine loads each model from (its own resolver), so stock loads the same ones."""
    from engine.models import ModelRegistry

    registry = ModelRegistry(settings, plan.device, plan.dtype, "resident")
    return {name: registry.resolve(name) for name in MODELS}


def draft_decoder_folder(settings) -> Path | None:
    """The TAESDXL folder the engine decodes drafts with (stock's same-seed draft swaps it in), or None."""
    if settings.draft_decoder != "tiny" or not settings.draft_vae_model:
        return None
    source = settings.draft_vae_model
    if source.startswith("tiny:"):
        from engine.tiny import ensure_tiny_models

        return ensure_tiny_models(Path(settings.cache_dir)) / source.removeprefix("tiny:")
    if Path(source).expanduser().exists():
        return Path(source).expanduser()
    from engine.models import VAE_FILES, ModelMissing, ModelRegistry

    try:
        return ModelRegistry(settings, "cpu", None, "resident")._hub_snapshot(source, VAE_FILES, "draft decoder")
    except ModelMissing:
        return None  # the engine falls back to the full VAE too
