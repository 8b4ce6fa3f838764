"""Which safetensors files a component folder loads: the fp16 variant where there is one, else the plain ones.

Repositories differ: SDXL's ship ``diffusion_pytorch_model.fp16.safetensors`` next to the float32 files,
many ControlNets, few-step UNets and community models ship only plain safetensors, and large text encoders
come in shards (``model.fp16-00001-of-00002.safetensors`` with ``model.safetensors.index.fp16.json``).
The choice is made per component folder, from a repository's file list (what to download) or from the
files on disk (what is there, what to load). Pickles (``.bin``, ``.ckpt``, ``.pt``) are never chosen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

FP16 = "fp16"
# The names diffusers (diffusion_pytorch_model) and transformers (model) load from a component folder.
_WEIGHTS = re.compile(r"^(?:diffusion_pytorch_model|model)(\.fp16)?(?:-\d+-of-\d+)?\.safetensors$")
_INDEX = re.compile(
    r"^(?:diffusion_pytorch_model|model)(?:\.safetensors\.index(\.fp16)?\.json|(\.fp16)\.safetensors\.index\.json)$"
)


def _kind(name: str) -> tuple[str | None, bool] | None:
    """(variant, is_index) of a weights file name, or None for any other file."""
    m = _WEIGHTS.match(name)
    if m:
        return (FP16 if m.group(1) else None), False
    m = _INDEX.match(name)
    if m:
        return (FP16 if (m.group(1) or m.group(2)) else None), True
    return None


def pick(names: Iterable[str]) -> tuple[str | None, list[str]]:
    """Of the file names in one folder: the variant to load ("fp16" or None) and its files (weights and index).

    The fp16 files when the folder has fp16 safetensors, else the plain ones; an empty list when it has
    no safetensors at all (an index alone does not count).
    """
    kinds = {n: _kind(n) for n in names}
    for variant in (FP16, None):
        weights = [n for n, k in kinds.items() if k == (variant, False)]
        if weights:
            return variant, sorted(weights + [n for n, k in kinds.items() if k == (variant, True)])
    return None, []


def repo_weight_files(repo_files: Iterable[str], folder: str) -> list[str]:
    """The weights to fetch for component ``folder`` ("" for the root) from a repository's file list."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    names = [f[len(prefix) :] for f in repo_files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
    return [prefix + n for n in pick(names)[1]]


def local_weights(folder: Path) -> tuple[str | None, list[Path]]:
    """The variant and the safetensors files (no index) a component folder on disk loads."""
    if not folder.is_dir():
        return None, []
    variant, names = pick(p.name for p in folder.iterdir() if p.is_file())
    return variant, [folder / n for n in names if n.endswith(".safetensors")]


def weights_complete(folder: Path) -> bool:
    """Whether a component folder has loadable safetensors: weights of its variant, and every shard its index names."""
    variant, names = pick(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else (None, [])
    if not names:
        return False
    for index in (n for n in names if n.endswith(".json")):
        try:
            shards = set(json.loads((folder / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        if not all((folder / s).is_file() for s in shards):
            return False
    return True


def pipeline_variant(folder: Path, components: Iterable[str]) -> str | None:
    """The ``variant`` for a pipeline's ``from_pretrained``: "fp16" when any component folder has fp16 weights.

    diffusers then loads each component's fp16 files and falls back to the plain ones for a component that
    has none, which is the per-folder choice :func:`pick` makes.
    """
    return FP16 if any(local_weights(folder / c)[0] == FP16 for c in components) else None
