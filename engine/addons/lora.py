"""SDXL LoRAs: list the owner's LoRAs, load each once per pipeline, stack up to two, switch them off after a job.

How the engine calls it, on its worker thread::

    library = LoraLibrary(addon_settings)            # once; holds the name -> file cache
    library.names() / library.complete("ink")        # for /imagine lora: autocomplete (<= 25 names)
    choices = library.validate([LoraChoice("ink", 0.8)])   # LoraError with a clear message if bad
    with library.applied(pipe, choices, model="turbo"):
        ... encode the prompt (text-encoder LoRA layers act there) and run the pipeline ...
    # on leaving, the LoRA layers are disabled: the next job without LoRA gives the same image as before

A LoRA is loaded into a pipeline with ``load_lora_weights(..., adapter_name=)`` the first time a
job asks for it and stays there (switched off between jobs); ``set_adapters`` picks the active
ones and their weights, ``disable_lora`` switches them off. At most ``LORA_LOADED_MAX`` stay
loaded per pipeline between jobs (a job's own LoRAs always load): the least recently used are
deleted (``delete_adapters``), and when a UNet or text encoder holds no adapter any more, peft's
wrappers are taken out of its layers too (peft keeps them after a delete), so it is the plain
module again, with the same weight storage. :meth:`LoraLibrary.unload` removes them all (out of
memory). Adapter names carry the model name (:func:`adapter_name`) because the text encoders are shared
between the engine's pipelines. Drafts are batched only with drafts of the same
:func:`lora_batch_key`.

Text-encoder LoRA layers go through transformers' PEFT integration, which needs a newer peft
than some installs have (:data:`TEXT_ENCODER_PEFT`); there the UNet part is loaded alone and a
warning is logged once per LoRA.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..requests import LORA_WEIGHT_RANGE, MAX_LORAS
from .settings import AddonMissing, AddonSettings, split_hub_file

log = logging.getLogger(__name__)

AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 suggestions
TEXT_ENCODER_PEFT = "0.22.0"  # transformers >= 5 loads text-encoder adapters only with peft >= this
_TEXT_ENCODER_PREFIXES = ("text_encoder", "lora_te", "te1", "te2", "te_")


class LoraError(ValueError):
    """A LoRA choice the engine cannot use (unknown name, too many, weight out of range, unreadable file)."""


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA of a job and its weight (1.0 = as trained, 0 = no effect)."""

    name: str
    weight: float = 1.0


def lora_batch_key(loras: Sequence[LoraChoice]) -> tuple[tuple[str, float], ...]:
    """Drafts batch together only when this key is equal: the same LoRAs with the same weights (order free)."""
    return tuple(sorted((choice.name, round(float(choice.weight), 4)) for choice in loras))


def adapter_name(name: str, model: str) -> str:
    """The peft adapter name of LoRA ``name`` in the pipeline of ``model``.

    Module-dict safe (letters, digits, ``_``), with a short hash of the exact name so that
    ``my-lora`` and ``my_lora`` never share an adapter.
    """
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{name}_{digest}__{model}")


@functools.cache
def text_encoder_lora_supported() -> bool:
    """Whether transformers' PEFT integration accepts the installed peft (needed for text-encoder LoRA layers)."""
    import importlib.metadata

    from packaging.version import Version

    try:
        import transformers

        if Version(transformers.__version__) < Version("5"):
            return True
        return Version(importlib.metadata.version("peft")) >= Version(TEXT_ENCODER_PEFT)
    except importlib.metadata.PackageNotFoundError:
        return False


def _hub_entry_name(entry: str) -> str:
    split = split_hub_file(entry)
    return Path(split[1]).stem if split else entry.split("/")[-1]


class LoraLibrary:
    """The owner's LoRAs by name, and which of them each pipeline has loaded. Only the worker thread uses it."""

    def __init__(self, settings: AddonSettings):
        self.settings = settings
        self._files: dict[str, Path] = {}
        self._warned_text_encoder: set[str] = set()
        self._used: dict[str, int] = {}  # adapter name -> when a job last used it (a counter)
        self._tick = 0

    # ---- what there is ----------------------------------------------------------------------

    def folder(self) -> Path | None:
        source = self.settings.lora_dir
        if not source:
            return None
        return self.settings.resolve_tiny(source) or Path(source).expanduser()

    def _folder_files(self) -> dict[str, Path]:
        folder = self.folder()
        if folder is None or not folder.is_dir():
            return {}
        return {path.stem: path for path in sorted(folder.glob("*.safetensors")) if path.is_file()}

    def names(self) -> list[str]:
        """Every LoRA a member can pick: the folder's file stems and the hub entries, sorted."""
        names = set(self._folder_files())
        names.update(_hub_entry_name(entry) for entry in self.settings.lora_hub)
        return sorted(names, key=str.lower)

    def complete(self, typed: str, limit: int = AUTOCOMPLETE_LIMIT) -> list[str]:
        """Names for autocomplete: those starting with ``typed`` first, then those containing it."""
        needle = typed.strip().lower()
        names = self.names()
        starts = [n for n in names if n.lower().startswith(needle)]
        contains = [n for n in names if needle in n.lower() and n not in starts]
        return (starts + contains)[:limit]

    def validate(self, loras: Sequence[LoraChoice]) -> tuple[LoraChoice, ...]:
        """The choices as given, or :class:`LoraError` naming what is wrong."""
        if len(loras) > MAX_LORAS:
            raise LoraError(f"At most {MAX_LORAS} LoRAs can be stacked; {len(loras)} were given.")
        known = set(self.names())
        seen: set[str] = set()
        low, high = LORA_WEIGHT_RANGE
        for choice in loras:
            if choice.name not in known:
                raise LoraError(f"Unknown LoRA {choice.name!r}: pick one from the list.")
            if choice.name in seen:
                raise LoraError(f"LoRA {choice.name!r} is given twice.")
            seen.add(choice.name)
            if not low <= float(choice.weight) <= high:
                raise LoraError(f"LoRA weight {choice.weight} for {choice.name!r} is out of range ({low} to {high}).")
        return tuple(loras)

    def file(self, name: str) -> Path:
        """The local .safetensors of LoRA ``name`` (a hub entry must have been downloaded)."""
        if name in self._files:
            return self._files[name]
        path = self._folder_files().get(name)
        if path is None:
            for entry in self.settings.lora_hub:
                if _hub_entry_name(entry) == name:
                    path = _hub_file(entry, local_only=True)
                    break
        if path is None:
            raise LoraError(f"Unknown LoRA {name!r}: pick one from the list.")
        self._files[name] = path
        return path

    # ---- pipelines --------------------------------------------------------------------------

    def loaded(self, pipe) -> list[str]:
        """Adapter names loaded into ``pipe``'s UNet."""
        if not getattr(pipe.unet, "peft_config", None):
            return []
        return list(pipe.get_list_adapters().get("unet", []))

    def _state_dict(self, name: str) -> dict:
        from safetensors.torch import load_file

        path = self.file(name)
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise LoraError(f"LoRA {name!r} ({path.name}) is not a readable safetensors file: {exc}") from None
        text_keys = [key for key in state if key.startswith(_TEXT_ENCODER_PREFIXES)]
        if text_keys and not text_encoder_lora_supported():
            if name not in self._warned_text_encoder:
                self._warned_text_encoder.add(name)
                log.warning(
                    "LoRA %s: its text-encoder layers need peft>=%s with this transformers; loading its UNet part only",
                    name, TEXT_ENCODER_PEFT,
                )
            skipped = set(text_keys)
            state = {key: value for key, value in state.items() if key not in skipped}
        return state

    def ensure_loaded(self, pipe, name: str, *, model: str) -> str:
        """Load LoRA ``name`` into ``pipe`` unless it is there already; returns its adapter name."""
        adapter = adapter_name(name, model)
        if adapter in self.loaded(pipe):
            return adapter
        state = self._state_dict(name)
        log.info("loading LoRA %s into %s", name, model)
        try:
            pipe.load_lora_weights(state, adapter_name=adapter)
        except Exception as exc:
            self._forget(pipe, adapter)
            raise LoraError(f"LoRA {name!r} does not fit the {model} model (is it an SDXL LoRA?): {exc}") from None
        if adapter not in self.loaded(pipe):
            self._forget(pipe, adapter)
            raise LoraError(f"LoRA {name!r} has no layers for the {model} model's UNet (is it an SDXL LoRA?).")
        return adapter

    def _forget(self, pipe, adapter: str) -> None:
        """Remove a half-loaded adapter from every component that got it."""
        with contextlib.suppress(Exception):
            if any(adapter in names for names in pipe.get_list_adapters().values()):
                pipe.delete_adapters([adapter])
            strip_empty_lora_layers(pipe)

    def activate(self, pipe, loras: Sequence[LoraChoice], *, model: str) -> None:
        """Make exactly ``loras`` (with their weights) active in ``pipe``; none switches LoRA off.

        Room is made first: the least recently used other LoRAs are deleted so that at most
        ``max(LORA_LOADED_MAX, len(loras))`` are loaded while the job runs."""
        if not loras:
            self.deactivate(pipe)
            return
        wanted = [adapter_name(choice.name, model) for choice in loras]
        self._tick += 1
        for adapter in wanted:
            self._used[adapter] = self._tick
        loaded = self.loaded(pipe)
        missing = sum(adapter not in loaded for adapter in wanted)
        if missing:
            self.trim(pipe, max(self.settings.lora_loaded_max, len(wanted)) - missing, keep=set(wanted))
        adapters = [self.ensure_loaded(pipe, choice.name, model=model) for choice in loras]
        pipe.enable_lora()
        pipe.set_adapters(adapters, adapter_weights=[float(choice.weight) for choice in loras])

    def deactivate(self, pipe) -> None:
        """Switch every loaded LoRA of ``pipe`` off (kept loaded for the next job that wants it)."""
        if self.loaded(pipe):
            pipe.disable_lora()

    @contextlib.contextmanager
    def applied(self, pipe, loras: Sequence[LoraChoice], *, model: str) -> Iterator[None]:
        """``loras`` active for the length of one job, switched off afterwards (also on errors); then at most
        ``LORA_LOADED_MAX`` stay loaded."""
        try:
            self.activate(pipe, loras, model=model)
            yield
        finally:
            self.deactivate(pipe)
            self.trim(pipe, self.settings.lora_loaded_max)

    def trim(self, pipe, size: int, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Delete the least recently used adapters of ``pipe`` (never those in ``keep``) until at most ``size``
        are loaded; returns the deleted ones."""
        loaded = self.loaded(pipe)
        victims = sorted((a for a in loaded if a not in keep), key=lambda a: self._used.get(a, 0))
        deleted = []
        while len(loaded) > max(size, 0) and victims:
            adapter = victims.pop(0)
            self._delete(pipe, adapter)
            loaded.remove(adapter)
            deleted.append(adapter)
        return deleted

    def _delete(self, pipe, adapter: str) -> None:
        log.info("unloading LoRA adapter %s (least recently used)", adapter)
        present = [names for names in pipe.get_list_adapters().values() if adapter in names]
        if present:
            pipe.delete_adapters([adapter])
        self._used.pop(adapter, None)
        strip_empty_lora_layers(pipe)

    def unload(self, pipe) -> None:
        """Remove every LoRA layer from ``pipe`` (frees memory; the next use loads again).

        Component by component: a text encoder shared with another model keeps that model's adapters."""
        for adapter in self.loaded(pipe):
            self._delete(pipe, adapter)
        strip_empty_lora_layers(pipe)


LORA_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def strip_empty_lora_layers(pipe) -> None:
    """Take peft's wrappers out of every LoRA-able component of ``pipe`` that holds no adapter any more.

    ``delete_adapters`` leaves a ``LoraLayer`` around each targeted layer, with no weights of its own but a
    detour on every call; here the layer is the plain module again, with the very same weight tensors.
    """
    from diffusers.utils import recurse_remove_peft_layers
    from peft.tuners.tuners_utils import BaseTunerLayer

    for component in LORA_COMPONENTS:
        model = getattr(pipe, component, None)
        if model is None or getattr(model, "peft_config", None):
            continue  # absent, or still holding an adapter
        if not any(isinstance(layer, BaseTunerLayer) for layer in model.modules()):
            continue
        recurse_remove_peft_layers(model)
        if hasattr(model, "peft_config"):
            del model.peft_config
        if hasattr(model, "_hf_peft_config_loaded"):
            model._hf_peft_config_loaded = None


def _hub_file(entry: str, *, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    split = split_hub_file(entry)
    try:
        if split:
            return Path(hf_hub_download(split[0], split[1], local_files_only=local_only))
        folder = Path(snapshot_download(entry, allow_patterns=["*.safetensors"], local_files_only=local_only))
    except Exception as exc:
        if local_only:
            raise AddonMissing(
                f"LoRA {entry} is not downloaded: run `python -m engine.addons download lora` "
                f"({exc.__class__.__name__})."
            ) from None
        raise AddonMissing(f"LoRA {entry} could not be downloaded: {exc.__class__.__name__}: {exc}") from None
    files = sorted(folder.rglob("*.safetensors"))
    if len(files) != 1:
        raise AddonMissing(
            f"LoRA {entry} holds {len(files)} .safetensors files: name one in LORA_HUB as {entry}/FILE.safetensors."
        )
    return files[0]


def missing(settings: AddonSettings) -> str | None:
    """One line saying what is wrong with the LoRA settings, or None (also None when LoRA is off)."""
    if not settings.lora_dir and not settings.lora_hub:
        return None
    library = LoraLibrary(settings)
    folder = library.folder()
    if folder is not None and not folder.is_dir():
        return f"LORA_DIR={settings.lora_dir} is not a folder: LoRA options are hidden."
    for entry in settings.lora_hub:
        try:
            _hub_file(entry, local_only=True)
        except AddonMissing as exc:
            return str(exc)
    if not library.names():
        return f"LORA_DIR={settings.lora_dir} holds no .safetensors LoRAs: LoRA options are hidden."
    return None


def download(settings: AddonSettings) -> list[Path]:
    """Fetch the LORA_HUB entries (safetensors only, with progress bars); the LORA_DIR folder is the owner's."""
    paths = []
    for entry in settings.lora_hub:
        print(f"fetching LoRA {entry}", flush=True)
        paths.append(_hub_file(entry, local_only=False))
    return paths
