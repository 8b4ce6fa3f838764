"""Which weights the engine needs, which of them are missing, and fetching exactly those files."""

from __future__ import annotations

from pathlib import Path

from .models import VAE_FILES, ModelMissing, ModelRegistry, final_pipelines, hub_files_for
from .settings import EngineSettings


def needed_models(settings: EngineSettings) -> list[str]:
    """The draft model and the configured final model(s)."""
    return ["turbo", *final_pipelines(settings.final_model)]


def missing_models(settings: EngineSettings, names: list[str]) -> list[str]:
    """Those of ``names`` whose weights are not on disk (the tiny preset builds its own: never missing)."""
    registry = ModelRegistry(settings, "cpu", None, "resident")
    missing = []
    for name in names:
        if settings.model_source(name).startswith("tiny:"):
            continue
        try:
            registry.resolve(name)
        except ModelMissing:
            missing.append(name)
    for name, source in (("vae", settings.vae_model), ("draft-decoder", settings.draft_vae_model)):
        if not source or source.startswith("tiny:") or Path(source).expanduser().exists():
            continue
        try:
            registry._hub_snapshot(source, VAE_FILES, name)
        except ModelMissing:
            missing.append(name)
    return missing


def download(settings: EngineSettings, names: list[str]) -> dict[str, Path]:
    """Fetch exactly the files the engine loads (fp16 safetensors, configs, tokenizers), with progress bars."""
    from huggingface_hub import snapshot_download

    paths: dict[str, Path] = {}
    for name in names:
        if name in ("vae", "draft-decoder"):  # fetched below whenever the settings name them
            continue
        source = settings.model_source(name)
        if source.startswith("tiny:") or Path(source).expanduser().exists():
            continue
        print(f"fetching {name}: {source}", flush=True)
        paths[name] = Path(snapshot_download(source, allow_patterns=hub_files_for(name)))
    if settings.vae_model and not Path(settings.vae_model).expanduser().exists():
        print(f"fetching vae: {settings.vae_model}", flush=True)
        paths["vae"] = Path(snapshot_download(settings.vae_model, allow_patterns=VAE_FILES))
    draft = settings.draft_vae_model
    if draft and not draft.startswith("tiny:") and not Path(draft).expanduser().exists():
        print(f"fetching draft decoder: {draft}", flush=True)
        paths["draft-decoder"] = Path(snapshot_download(draft, allow_patterns=VAE_FILES))
    return paths
