"""Loading pipelines: real weights and tiny ones go through the same ``from_pretrained``.

Only the engine's worker thread calls :class:`ModelRegistry` after start-up.

Components that are the same weights in several checkpoints (SDXL, Turbo and SSD-1B ship
text encoders and a VAE of one architecture) are shared only when their content hash
(``engine.hashes``) says they are identical. Which weights are needed and fetching them: ``engine.weights``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hashes import ComponentHashes
from .placement import Placement, tile_vae
from .settings import VAE_FP16_FIX, EngineSettings
from .weightfiles import pipeline_variant, repo_weight_files, weights_complete

log = logging.getLogger(__name__)

SHAREABLE = ("text_encoder", "text_encoder_2", "vae")
WEIGHT_COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae")
VAE_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]
RECOMPILE_LIMIT = 64  # compiled graphs per module: batch buckets x draft sizes, with room to spare


@functools.cache
def _dtype_keyword() -> str:
    """diffusers 0.42 renamed ``torch_dtype`` to ``dtype`` (the old name still works, with a warning)."""
    import diffusers
    from packaging.version import Version

    return "dtype" if Version(diffusers.__version__.split(".dev")[0]) >= Version("0.42") else "torch_dtype"


class ModelMissing(RuntimeError):
    """Weights are not on disk. The message names the model and how to fetch it."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; jobs that need it fail with this message."""


def download_patterns(has_text_encoder: bool = True, repo_files: list[str] | None = None) -> list[str]:
    """The files a pipeline needs: configs, tokenizers and, given the repository's file list, the weights of
    each component folder (fp16 safetensors where the folder has them, else plain safetensors; never pickles).

    Without ``repo_files`` only the configs and tokenizers: enough to find a local snapshot, whose weights
    are then checked on disk (:func:`engine.weightfiles.weights_complete`).
    """
    patterns = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer_2/*"]
    if has_text_encoder:
        patterns.append("tokenizer/*")
    for comp in pipeline_components(has_text_encoder):
        patterns.append(f"{comp}/config.json")
        if repo_files is not None:
            patterns += repo_weight_files(repo_files, comp)
    return patterns


def pipeline_components(has_text_encoder: bool = True) -> list[str]:
    """The component folders of a pipeline that hold weights."""
    return [c for c in WEIGHT_COMPONENTS if has_text_encoder or c != "text_encoder"]


def final_pipelines(final_model: str) -> list[str]:
    """The registry's models behind a final model: "ssd-1b" alone, or "sdxl" as base, then refiner."""
    return ["ssd-1b"] if final_model == "ssd-1b" else ["sdxl-base", "sdxl-refiner"]


def hub_files_for(name: str, repo_files: list[str] | None = None) -> list[str]:
    return download_patterns(has_text_encoder=(name != "sdxl-refiner"), repo_files=repo_files)


@dataclass
class Loaded:
    """A loaded model: its pipelines by task, and where it lives."""

    # The pipelines are held as Any: their __call__ takes loosely typed keyword arguments and is typed
    # to return "output or tuple", where the recipes always get the output (return_dict stays on).
    name: str
    text2img: Any  # StableDiffusionXLPipeline (None for the refiner)
    img2img: Any  # StableDiffusionXLImg2ImgPipeline sharing the same modules
    offloaded: bool = False
    load_s: float = 0.0
    hashes: dict[str, str] = field(default_factory=dict)


class ModelRegistry:
    """Resolves, loads and keeps the pipelines; shares identical components."""

    def __init__(self, settings: EngineSettings, device: str, dtype, memory: str):
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.memory = memory  # "resident" | "offload" (already resolved from "auto")
        self._loaded: dict[str, Loaded] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._shared: dict[str, object] = {}  # content hash -> module
        self.hashes = ComponentHashes(Path(settings.cache_dir) / "component-hashes.json")
        self._lock = threading.RLock()
        self._vae_override = None
        self._draft_decoder = None
        self._optimized: set[int] = set()  # ids of modules already made channels-last / fused
        self._compiled_ids: set[int] = set()
        self.compiled = settings.compile_on(device) and memory == "resident"  # no compiled graphs when offloading
        graphs = settings.cuda_graphs if settings.cuda_graphs is not None else True
        # Turbo keeps its graphs in offload mode too: it is never offloaded, only moved off for a final
        # (engine.placement), and the graphs are dropped before that and captured again after.
        self.graphs = graphs and str(device).startswith("cuda") and not self.compiled
        self.placement = Placement(device, memory)

    # ---- resolving -------------------------------------------------------------------------

    def resolve(self, name: str) -> Path:
        """Local folder of a model; raises :class:`ModelMissing` with what to do."""
        source = self.settings.model_source(name)
        if source.startswith("tiny:"):
            from .tiny import ensure_tiny_models

            return ensure_tiny_models(Path(self.settings.cache_dir)) / source.removeprefix("tiny:")
        path = Path(source).expanduser()
        if path.exists():
            if not (path / "model_index.json").exists():
                raise ModelMissing(f"{path} has no model_index.json: it is not a diffusers pipeline folder.")
            return path
        return self._hub_snapshot(source, hub_files_for(name), name)

    def _hub_snapshot(self, repo_id: str, patterns: list[str], name: str) -> Path:
        """The local snapshot of ``repo_id``; raises :class:`ModelMissing` when it is not on disk, or when a
        component folder whose config ``patterns`` name has no safetensors (configs alone are not a model)."""
        from huggingface_hub import snapshot_download

        fetch = (
            "Fetch it once with `python -m engine download` (fp16 safetensors where the repository has them, "
            "else plain safetensors), or set the model to a local diffusers folder in .env."
        )
        try:
            folder = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError, ...
            missing = f"Model {repo_id} ({name}) is not downloaded."
            raise ModelMissing(f"{missing} {fetch} ({exc.__class__.__name__})") from None
        components = [p.removesuffix("config.json").rstrip("/") for p in patterns if p.split("/")[-1] == "config.json"]
        lacking = [c or "the root folder" for c in components if not weights_complete(folder / c)]
        if lacking:
            where = ", ".join(lacking)
            raise ModelMissing(f"Model {repo_id} ({name}) has no safetensors weights on disk for {where}. {fetch}")
        return folder

    # ---- loading ---------------------------------------------------------------------------

    def _variant(self, folder: Path) -> str | None:
        """The pipeline's variant: "fp16" when a component folder has fp16 safetensors (single or sharded).

        diffusers falls back to the plain files for a folder without them, as the download chose per folder."""
        return pipeline_variant(folder, WEIGHT_COMPONENTS)

    def _vae_fix(self):
        if not self.settings.vae_model:
            return None
        if self._vae_override is None:
            from diffusers import AutoencoderKL

            source = self.settings.vae_model
            path = Path(source).expanduser()
            if not path.exists():
                try:
                    path = self._hub_snapshot(source, VAE_FILES, "vae")
                except ModelMissing as exc:  # each model's own VAE still works (upcast to float32)
                    log.warning("%s; finals decode with each model's own VAE in float32", exc)
                    self.settings = self.settings.replace(vae_model="")
                    return None
            vae = AutoencoderKL.from_pretrained(path, use_safetensors=True, **{_dtype_keyword(): self.dtype})
            if source == VAE_FP16_FIX or not vae.config.get("force_upcast", True):
                vae.register_to_config(force_upcast=False)
            self._vae_override = vae.to(self.device) if self.memory == "resident" else vae
        return self._vae_override

    def draft_decoder(self):
        """The cheap decoder (TAESDXL, an ``AutoencoderTiny``) for drafts and previews; loaded once, on the device."""
        with self._lock:
            if self._draft_decoder is None:
                from diffusers import AutoencoderTiny

                source = self.settings.draft_vae_model
                if source.startswith("tiny:"):
                    from .tiny import ensure_tiny_models

                    path = ensure_tiny_models(Path(self.settings.cache_dir)) / source.removeprefix("tiny:")
                else:
                    path = Path(source).expanduser()
                    if not path.exists():
                        path = self._hub_snapshot(source, VAE_FILES, "draft decoder")  # callers fall back
                started = time.perf_counter()
                with _normal_tensors():  # first used inside a recipe's inference_mode: weights must not be
                    decoder = AutoencoderTiny.from_pretrained(  # inference tensors (channels-last and
                        path, use_safetensors=True, **{_dtype_keyword(): self.dtype}  # compile change them)
                    )
                    decoder = decoder.to(self.device).eval()
                    self._optimize(decoder)
                if self.compiled and "turbo" in self.settings.compiled_models():
                    self._compile(decoder.decoder)
                log.info("loaded the draft decoder from %s in %.1fs", path, time.perf_counter() - started)
                self._draft_decoder = decoder
            return self._draft_decoder

    # ---- speed -------------------------------------------------------------------------------

    def _optimize(self, module) -> None:
        """Channels-last memory format (``fast_kernels``) and fused QKV projections (``fuse_qkv``); each module once."""
        fast, fused = self.settings.fast_kernels, self.settings.fuse_qkv
        if not (fast or fused) or module is None or id(module) in self._optimized:
            return
        import torch

        self._optimized.add(id(module))
        if fast:
            module.to(memory_format=torch.channels_last)
        # Fused QKV keeps the unfused projections too (+1.3 GB for Turbo): never where memory is short.
        fuse = getattr(module, "fuse_qkv_projections", None) if fused and self.memory == "resident" else None
        if fuse is not None:
            try:
                fuse()
            except Exception as exc:  # an architecture without fusable attention: nothing lost
                log.info("no fused QKV for %s: %s", type(module).__name__, exc)

    def _compile(self, module) -> None:
        """``torch.compile`` in place with a persistent cache; one graph per shape (batch bucket), no dynamic shapes."""
        import torch

        configure_compile_cache(self.settings.compile_cache())
        mode = self.settings.compile_mode or ("reduce-overhead" if self.device.startswith("cuda") else "default")
        # dynamic=None: shapes are static unless marked; the draft path marks the batch dimension
        # (engine.recipes.images.dynamic_batch), so batches 2-16 share one graph and nothing recompiles.
        module.compile(backend=self.settings.compile_backend, mode=None if mode == "default" else mode, dynamic=None)
        compiled_call = getattr(module, "_compiled_call_impl", None)  # what nn.Module.compile installs
        if compiled_call is not None:
            module._compiled_call_impl = _eager_on_failure(module, compiled_call)
        limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
        torch._dynamo.config.cache_size_limit = limit
        if hasattr(torch._dynamo.config, "recompile_limit"):
            torch._dynamo.config.recompile_limit = limit

    def get(self, name: str) -> Loaded:
        """The loaded model ``name``; loads it on first use. Raises ModelMissing / ModelLoadError."""
        with self._lock:
            if name in self._loaded:
                if name == "turbo" and self.memory == "offload":
                    self._place_drafts(self._loaded[name])
                return self._loaded[name]
            failed = self._failed.get(name)
            if failed and time.monotonic() - failed[0] < 60:
                raise ModelLoadError(failed[1])
            try:
                with _normal_tensors():
                    loaded = self._load(name)
            except ModelMissing as exc:
                self._failed[name] = (time.monotonic(), str(exc))
                raise
            except Exception as exc:
                log.exception("loading %s failed", name)
                msg = f"Model {name} failed to load: {exc.__class__.__name__}: {exc}"
                self._failed[name] = (time.monotonic(), msg)
                raise ModelLoadError(msg) from exc
            self._failed.pop(name, None)
            self._loaded[name] = loaded
            return loaded

    # ---- placement (offload mode) ---------------------------------------------------------------

    def make_room(self) -> None:
        """Offload mode: Turbo leaves the device before a final's modules come in (``engine.placement``)."""
        turbo = self._loaded.get("turbo")
        self.placement.evict_drafts(turbo.text2img if turbo is not None else None)

    def _place_drafts(self, turbo: Loaded) -> None:
        finals = {name: m.img2img for name, m in self._loaded.items() if m.offloaded}
        self.placement.restore_drafts(turbo.text2img, finals)

    def loaded_names(self) -> list[str]:
        return list(self._loaded)

    def loaded(self) -> list[Loaded]:
        """The loaded models as they are: unlike ``get``, nothing moves (offload keeps Turbo where it is)."""
        return list(self._loaded.values())

    def failures(self) -> dict[str, str]:
        return {name: msg for name, (_, msg) in self._failed.items()}

    def _load(self, name: str) -> Loaded:
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

        started = time.perf_counter()
        folder = self.resolve(name)
        # Finals are offloaded in "offload" mode; the draft model always stays on the device.
        offload = self.memory == "offload" and name != "turbo"
        share = not offload and self.memory == "resident"
        kwargs: dict[str, object] = {}
        hashes: dict[str, str] = {}
        index = json.loads((folder / "model_index.json").read_text())
        for comp in SHAREABLE:
            entry = index.get(comp)
            if not entry or entry[0] is None:
                continue
            digest = self.hashes.of(folder / comp)
            if digest is None:
                continue
            hashes[comp] = digest
            if share and digest in self._shared:
                kwargs[comp] = self._shared[digest]
        vae_fix = self._vae_fix()
        if vae_fix is not None:
            kwargs["vae"] = vae_fix
        if name == "sdxl-refiner":
            base = self.get("sdxl-base")
            # The ensemble of experts: the refiner reuses the base's second text encoder and VAE
            # when (and only when) they are the same weights.
            for comp in ("text_encoder_2", "vae"):
                if comp in hashes and hashes[comp] == base.hashes.get(comp) and not offload:
                    kwargs[comp] = getattr(base.img2img, comp)
            cls: type[StableDiffusionXLPipeline | StableDiffusionXLImg2ImgPipeline] = StableDiffusionXLImg2ImgPipeline
        else:
            cls = StableDiffusionXLPipeline
        shared_names = sorted(kwargs)
        pipe = cls.from_pretrained(
            folder,
            **{_dtype_keyword(): self.dtype},
            variant=self._variant(folder),
            use_safetensors=True,
            local_files_only=True,
            **kwargs,
        )
        pipe.set_progress_bar_config(disable=True)
        if offload:
            pipe.enable_model_cpu_offload(device=self.device)
            self.placement.guard(pipe, self.make_room)
            tile_vae(pipe.vae)
        else:
            pipe.to(self.device)
        if share:
            for comp, digest in hashes.items():
                self._shared.setdefault(digest, getattr(pipe, comp))
        self._optimize(pipe.unet)
        self._optimize(pipe.vae)
        if self.compiled and name in self.settings.compiled_models() and id(pipe.unet) not in self._compiled_ids:
            self._compiled_ids.add(id(pipe.unet))
            self._compile(pipe.unet)
        if name == "sdxl-refiner":
            text2img, img2img = None, pipe
        else:
            text2img = pipe
            img2img = self.derive(StableDiffusionXLImg2ImgPipeline, pipe)
        load_s = time.perf_counter() - started
        log.info(
            "loaded %s from %s in %.1fs (%s%s)",
            name,
            folder,
            load_s,
            "offloaded" if offload else f"on {self.device}",
            f", shared: {', '.join(shared_names)}" if shared_names else "",
        )
        return Loaded(name, text2img, img2img, offload, load_s, hashes)

    def derive(self, cls, pipe):
        """Another task's pipeline over the same modules (no weights loaded twice).

        ``from_pipe`` casts every module to float32 unless told the dtype: on a GPU that would
        double the memory of the shared modules and break the refiner, whose UNet stays float16.
        """
        derived = cls.from_pipe(pipe, **{_dtype_keyword(): self.dtype})
        derived.set_progress_bar_config(disable=True)
        return derived

    def shares(self, a: str, b: str, component: str) -> bool:
        """Whether two loaded models use the very same module for ``component`` (for tests and logs)."""
        pa, pb = self._loaded[a].img2img, self._loaded[b].img2img
        return getattr(pa, component, None) is not None and getattr(pa, component) is getattr(pb, component, None)


def _eager_on_failure(module, compiled_call):
    """``module``'s compiled call, or its eager one for good once compiling fails (one log line names the setting).

    A failure that the eager call repeats (bad input, out of memory) is not compile's: it is raised and the
    compiled call stays."""

    def call(*args, **kwargs):
        try:
            return compiled_call(*args, **kwargs)
        except Exception as exc:
            from .device import is_oom

            if is_oom(exc) or "fail_on_recompile" in str(exc):  # a stance that asks compile to fail (tests)
                raise
            module._compiled_call_impl = None  # nn.Module's eager call from now on
            try:
                out = module._call_impl(*args, **kwargs)
            except Exception:
                module._compiled_call_impl = call
                raise
            log.error(
                "torch.compile of %s failed (%s: %s); it runs eagerly from now on. "
                "Set ENGINE_COMPILE=false to skip compiling.",
                type(module).__name__,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return out

    return call


def _normal_tensors():
    """Load outside ``torch.inference_mode`` even when a recipe asks for a model from inside it."""
    import torch

    return torch.inference_mode(False)


def configure_compile_cache(folder: Path) -> None:
    """Point Inductor's (and Triton's) on-disk caches at ``folder`` so a restart reuses compiled graphs."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
    except Exception:  # an older torch: the environment variables still apply
        log.debug("could not configure the inductor cache", exc_info=True)
