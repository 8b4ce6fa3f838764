"""Which weights the engine needs, which of them are missing, and fetching exactly those files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .models import VAE_FILES, ModelMissing, ModelRegistry, final_pipelines, hub_files_for
from .settings import EngineSettings
from .weightfiles import weights_complete


def needed_models(settings: EngineSettings) -> list[str]:
    """The draft model and the configured final model(s)."""
    return ["turbo", *final_pipelines(settings.final_model)]


def missing_models(settings: EngineSettings, names: list[str]) -> list[str]:
    """Those of ``names`` whose weights are not on disk (the tiny preset builds its own: never missing).

    A model counts as present only when each of its component folders has safetensors weights (every shard its
    index names): a snapshot holding configs alone is missing.
    """
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


def repo_files(repo_id: str) -> list[str]:
    """The file names of a Hugging Face repository (one request)."""
    from huggingface_hub import list_repo_files

    return list_repo_files(repo_id)


def download(
    settings: EngineSettings, names: list[str], list_files: Callable[[str], list[str]] = repo_files
) -> dict[str, Path]:
    """Fetch exactly the files the engine loads, with progress bars: configs, tokenizers and, per component
    folder, the fp16 safetensors where the repository has them, else the plain safetensors (never pickles).

    Raises :class:`ModelMissing` when a component folder of a repository has no safetensors at all.
    """
    from huggingface_hub import snapshot_download

    paths: dict[str, Path] = {}
    for name in names:
        if name in ("vae", "draft-decoder"):  # fetched below whenever the settings name them
            continue
        source = settings.model_source(name)
        if source.startswith("tiny:") or Path(source).expanduser().exists():
            continue
        print(f"fetching {name}: {source}", flush=True)
        patterns = hub_files_for(name, list_files(source))
        folder = Path(snapshot_download(source, allow_patterns=patterns))
        components = [p.removesuffix("/config.json") for p in patterns if p.endswith("/config.json")]
        lacking = [c for c in components if not weights_complete(folder / c)]
        if lacking:
            raise ModelMissing(
                f"{source} ({name}) has no safetensors weights for {', '.join(lacking)} (pickled .bin/.ckpt weights "
                "are never loaded): point the model at a repository or local diffusers folder with safetensors."
            )
        paths[name] = folder
    if settings.vae_model and not Path(settings.vae_model).expanduser().exists():
        print(f"fetching vae: {settings.vae_model}", flush=True)
        paths["vae"] = Path(snapshot_download(settings.vae_model, allow_patterns=VAE_FILES))
    draft = settings.draft_vae_model
    if draft and not draft.startswith("tiny:") and not Path(draft).expanduser().exists():
        print(f"fetching draft decoder: {draft}", flush=True)
        paths["draft-decoder"] = Path(snapshot_download(draft, allow_patterns=VAE_FILES))
    return paths
