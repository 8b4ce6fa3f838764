"""The model folders both sides load: random-weight pipelines built and saved once (``--arch``), the
engine's settings pointing at them, and the folders the engine itself resolves each model to."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.meters import free_memory
from benchmarks.plan import MODELS, Plan, log


def build_random(arch: str, cache_dir: Path, init_std: float, device: str, half: bool | None = None,
                 models: tuple[str, ...] = MODELS) -> Path:
    """Random-weight pipelines of ``arch``, saved once; returns their root folder.

    ``half`` (default: on CUDA) saves float16 weights as the ``fp16`` variant, as the hub ships them.
    ``models`` saves only those (the GPU run saves Turbo and SSD-1B first, base + refiner when time is left).
    """
    import torch

    from engine.tiny import build_pipelines

    half = device.startswith("cuda") if half is None else half
    variant = "fp16" if half else None
    root = Path(cache_dir) / f"bench-{arch}-std{init_std:g}-{variant or 'fp32'}"
    if all((root / m / "model_index.json").exists() for m in models):
        save_decoders(root, arch, half)
        return root
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"building random {arch} pipelines (init_std {init_std}) on {device} ...")
    try:  # on a GPU: initialising 9 billion parameters there takes seconds, on a CPU minutes
        with torch.device(device):
            pipelines = build_pipelines(arch, init_std=init_std)
    except Exception as exc:
        if device == "cpu":
            raise
        log(f"  building on {device} failed ({exc.__class__.__name__}: {exc}); building on the CPU")
        pipelines = None
        free_memory(device)
        pipelines = build_pipelines(arch, init_std=init_std)
    log(f"  built in {time.perf_counter() - started:.0f} s; saving under {root}")
    for name in MODELS:
        final = root / name
        pipe = pipelines.pop(name)
        if name in models and not (final / "model_index.json").exists():
            if half:
                pipe.to(dtype=torch.float16)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
            pipe.save_pretrained(tmp, safe_serialization=True, variant=variant)
            try:
                os.replace(tmp, final)
            except OSError:  # another process saved it first
                shutil.rmtree(tmp, ignore_errors=True)
        del pipe
    free_memory(device)
    save_decoders(root, arch, half)
    log(f"  saved in {time.perf_counter() - started:.0f} s")
    return root


def save_decoders(root: Path, arch: str, half: bool) -> None:
    """Beside the pipelines: a random TAESDXL (``AutoencoderTiny``, its published layout at ``--arch full``)
    and the fp16-fix VAE's stand-in (the pipelines' VAE with ``force_upcast`` off, as the fix's config has it)."""
    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny

    from engine.tiny import build_tiny_draft_decoder

    dtype = torch.float16 if half else torch.float32
    if not (root / "taesdxl" / "config.json").exists():
        taesd = AutoencoderTiny() if arch == "full" else build_tiny_draft_decoder(1.75)
        taesd.to(dtype).save_pretrained(root / "taesdxl", safe_serialization=True)
    if not (root / "vae-fp16-fix" / "config.json").exists():
        variant = "fp16" if half else None
        vae = AutoencoderKL.from_pretrained(root / "turbo" / "vae", variant=variant, use_safetensors=True)
        vae.register_to_config(force_upcast=False)
        vae.to(dtype).save_pretrained(root / "vae-fp16-fix", safe_serialization=True)


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
