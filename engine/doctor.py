"""What ``python bot.py --check`` reports about this machine for the local engine, before any download.

torch's build and whether it sees CUDA, the GPU and its memory, the memory mode ``ENGINE_MEMORY=auto`` picks,
which model weights are on disk, and the free disk space where the missing ones would go (``HF_HOME``).
Each finding is one line; a problem is something that stops the bot from starting or its first download.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .device import resolve_device, resolve_memory
from .settings import EngineSettings
from .weights import missing_models, needed_models

GB = 1e9
# About what `python -m engine download` fetches per model (fp16 safetensors: the UNet, the text encoders, the VAE;
# from the parameter counts in docs: SDXL-size UNet 5.1 GB, SSD-1B 2.7 GB, refiner 4.5 GB, CLIP-L + bigG 1.6 GB).
DOWNLOAD_BYTES = {
    "turbo": 6.9 * GB,
    "ssd-1b": 4.5 * GB,
    "sdxl-base": 6.9 * GB,
    "sdxl-refiner": 6.1 * GB,
    "vae": 0.34 * GB,
    "draft-decoder": 0.01 * GB,
}
SPARE_BYTES = 2 * GB  # room left over after the download (logs, the database, stored images)


@dataclass(frozen=True)
class Finding:
    text: str
    problem: bool = False


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def torch_findings(settings: EngineSettings) -> tuple[list[Finding], str | None]:
    """torch, CUDA, the GPU and the memory mode; the device the engine would use (None: it cannot start)."""
    import torch

    findings = [Finding(f"torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no (a CPU-only build)'}")]
    try:
        device = resolve_device(settings.device)
    except RuntimeError as e:
        return [*findings, Finding(str(e), problem=True)], None
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        findings.append(Finding(f"GPU {index}: {props.name}, {props.total_memory / 2**30:.1f} GiB"))
        mode = resolve_memory(settings.memory, device, settings.final_model, settings.fuse_qkv)
        findings.append(Finding(f"memory mode: {mode} (ENGINE_MEMORY={settings.memory})"))
    elif settings.preset == "sdxl":
        findings.append(
            Finding(
                f"no CUDA GPU: the engine would run on {device}, minutes per image with the real models "
                "(install the CUDA build of torch, or ENGINE_PRESET=tiny to try the bot)"
            )
        )
    else:
        findings.append(Finding(f"device: {device} (ENGINE_PRESET={settings.preset})"))
    return findings, device


def weight_findings(settings: EngineSettings, cache: Path | None = None) -> list[Finding]:
    """Which weights are on disk, and whether the disk holds the missing ones."""
    if settings.preset == "tiny":
        return [Finding("weights: none needed (ENGINE_PRESET=tiny builds tiny random models)")]
    decoders = [name for name, source in (("vae", settings.vae_model), ("draft-decoder", settings.draft_vae_model))
                if source]
    missing = missing_models(settings, needed_models(settings))
    on_disk = [name for name in [*needed_models(settings), *decoders] if name not in missing]
    findings = []
    if on_disk:
        findings.append(Finding(f"weights on disk: {', '.join(on_disk)}"))
    if not missing:
        return findings
    where = _existing(cache if cache is not None else _hub_cache())
    need = sum(DOWNLOAD_BYTES.get(name, 0.0) for name in missing)
    free = shutil.disk_usage(where).free
    line = f"weights to download at the first start: {', '.join(missing)}, about {need / GB:.1f} GB into {where}"
    findings.append(Finding(line))
    if free < need + SPARE_BYTES:
        findings.append(
            Finding(
                f"not enough disk for the download: {free / GB:.1f} GB free at {where}, about "
                f"{(need + SPARE_BYTES) / GB:.1f} GB needed (set HF_HOME to a bigger disk)",
                problem=True,
            )
        )
    return findings


def machine_findings(settings: EngineSettings, cache: Path | None = None) -> list[Finding]:
    findings, _device = torch_findings(settings)
    return [*findings, *weight_findings(settings, cache)]
