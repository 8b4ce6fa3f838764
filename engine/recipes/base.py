"""What every recipe stands on: the models, the settings, the prompt cache and the prompt craft.

:class:`RecipeBase` holds the state one worker's recipes share, and :meth:`RecipeBase.craft` wraps
one run: LoRAs (``LoraLibrary.applied``; the embedding cache is keyed by the active LoRAs, whose
text-encoder layers change the embeddings), the IP-Adapter reference (base pass only) and ``tile``
(``engine.tiling.seamless`` on the UNet, the VAE and TAESDXL). Jobs with any of them skip CUDA
graphs (captured for the plain modules). The add-ons load on first use.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ..addons.settings import AddonMissing, AddonSettings, addon_settings_for
from ..detail import preview_detail_of
from ..graphs import CudaGraphs
from ..models import ModelMissing, ModelRegistry
from ..requests import DraftRequest, FinalRequest, RequestError, craft_key
from ..settings import EngineSettings
from ..tiling import seamless
from .embeddings import PromptCache, PromptEncoder
from .images import StepFn, drop_float32_copies, guidance_kwargs, latent_preview

if TYPE_CHECKING:
    from ..addons.describe import Describer
    from ..addons.lora import LoraLibrary
    from ..addons.reference import ReferenceAdapter
    from ..addons.upscale import Upscaler

log = logging.getLogger(__name__)


class RecipeBase:
    """The shared state of the recipes over a :class:`ModelRegistry`."""

    def __init__(self, registry: ModelRegistry, settings: EngineSettings, addons: AddonSettings | None = None):
        self.registry = registry
        self.settings = settings
        self.addons = addons if addons is not None else addon_settings_for(settings)
        self._lora_library: LoraLibrary | None = None
        self._reference: ReferenceAdapter | None = None
        self._upscaler: Upscaler | None = None
        self._describer: Describer | None = None
        self._embed_tag: tuple = ()  # the active LoRAs: part of the embedding cache key
        self._inpaint: dict[str, Any] = {}  # model name -> inpaint pipeline sharing its modules
        self.prompts = PromptCache(settings.prompt_cache_size)
        self._encoder = PromptEncoder(self.prompts)
        self.last_stages: dict[str, float] = {}  # seconds per stage of the last call ("text", "unet", "decode")
        self.last_batch: int = 0  # images the last draft batch ran at (after bucket padding)
        self._graphs: dict[int, CudaGraphs] = {}  # id(module) -> its CUDA graphs (registry.graphs on)

    # ---- prompts and steps -------------------------------------------------------------------

    def embeddings(
        self, pipe, prompts: list[str], negative_prompts: list[str] | None = None, guidance: bool = False
    ) -> dict[str, torch.Tensor]:
        """Pipeline keyword arguments (``prompt_embeds`` ...) for one image per prompt, from the cache."""
        return self._encoder.embeddings(pipe, prompts, negative_prompts, guidance, tag=self._embed_tag)

    def _guidance_kwargs(
        self, on_step: StepFn | None, cancel: threading.Event | None, total: int, guidance: float
    ) -> dict[str, Any]:
        return guidance_kwargs(on_step, cancel, total, guidance, self.settings.guidance_cutoff)

    def planned_steps(self, request: FinalRequest) -> int:
        steps = request.steps or self.settings.final_steps
        if request.init is not None:
            return max(1, min(int(steps * request.strength), steps))
        return steps

    def _guidance_of(self, request: FinalRequest) -> float:
        return request.guidance if request.guidance is not None else self.settings.final_guidance(request.model)

    def _final_embeds(self, pipe, request: FinalRequest, guidance: float) -> dict[str, Any]:
        cfg = guidance > 1.0
        negatives = [request.negative_prompt] if cfg else None
        return self.embeddings(pipe, [request.prompt], negatives, guidance=cfg)

    # ---- add-ons -----------------------------------------------------------------------------

    def lora_library(self) -> LoraLibrary:
        if self._lora_library is None:
            from ..addons.lora import LoraLibrary

            self._lora_library = LoraLibrary(self.addons)
        return self._lora_library

    def reference_adapter(self) -> ReferenceAdapter:
        if self._reference is None:
            from ..addons.reference import ReferenceAdapter

            self._reference = ReferenceAdapter(self.addons)
        return self._reference

    def upscaler(self) -> Upscaler:
        if self._upscaler is None:
            from ..addons.upscale import Upscaler

            self._upscaler = Upscaler(self.addons, self.registry.device)
        return self._upscaler

    def describer(self) -> Describer:
        if self._describer is None:
            from ..addons.describe import Describer

            self._describer = Describer(self.addons, self.registry.device)
        return self._describer

    @staticmethod
    def is_plain(request: DraftRequest | FinalRequest) -> bool:
        """No tile, LoRA or reference: the job may use the CUDA graphs of the plain modules."""
        return craft_key(request) == (False, (), ())

    @contextlib.contextmanager
    def craft(self, request: DraftRequest | FinalRequest, pipe, model: str, *tiled) -> Iterator[dict[str, Any]]:
        """LoRAs and the reference on ``pipe`` (of ``model``), ``tile`` on its UNet and VAE and on ``tiled``.

        Yields the extra keyword arguments of the pipeline call (``ip_adapter_image``); everything
        is undone on leaving, also when the job fails. Bad LoRAs or references raise RequestError.
        """
        from ..addons.lora import LoraChoice, LoraError, lora_batch_key
        from ..addons.reference import ReferenceImageError, load_reference_image

        extra: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            self.release_idle()
            if request.loras or request.reference is not None:
                # Fused QKV projections bypass LoRA layers on to_q/to_k/to_v, and the IP-Adapter swaps the
                # processors: unfused for this job (entered first, so left last: LoRA off, adapter gone).
                stack.enter_context(unfused(pipe.unet))
            try:
                if request.loras:
                    choices = [LoraChoice(name, weight) for name, weight in request.loras]
                    library = self.lora_library()
                    library.validate(choices)
                    stack.enter_context(library.applied(pipe, choices, model=model))
                    previous = self._embed_tag
                    self._embed_tag = (model, lora_batch_key(choices))
                    stack.callback(setattr, self, "_embed_tag", previous)
                if request.reference is not None:
                    image = load_reference_image(request.reference)
                    extra = stack.enter_context(
                        self.reference_adapter().applied(
                            pipe, image, weight=request.reference_weight, mode=request.reference_mode
                        )
                    )
            except (LoraError, ReferenceImageError) as exc:
                raise RequestError(str(exc)) from None
            except AddonMissing as exc:
                log.error("add-on missing: %s", exc)
                raise RequestError("That add-on is not available on this bot right now.") from None
            if request.tile:
                stack.enter_context(seamless(pipe.unet, pipe.vae, *tiled))
            yield extra

    # ---- memory ------------------------------------------------------------------------------

    def release_idle(self, now: float | None = None) -> None:
        """What has waited long enough leaves the GPU: the reference's image encoder after its idle time.

        Called at the start of every crafted job (before it needs the memory) and on out-of-memory."""
        if self._reference is not None:
            self._reference.release_idle(now)

    def free_memory(self) -> None:
        """Out of memory: every add-on weight that is not in use leaves the GPU (LoRAs unloaded, the image
        encoder to host memory, float32 decoder copies dropped); the plain modules stay where their CUDA graphs
        expect them."""
        drop_float32_copies()
        if self._reference is not None:
            self._reference.release()
        if self._lora_library is not None:
            for loaded in self.registry.loaded():  # not get(): in offload mode that would bring Turbo back now
                self._lora_library.unload(loaded.text2img or loaded.img2img)

    # ---- decoders ----------------------------------------------------------------------------

    def draft_decoder(self):
        """TAESDXL for drafts, or None for the full VAE (``DRAFT_DECODER=full``, or TAESDXL not on disk)."""
        if self.settings.draft_decoder != "tiny" or not self.settings.draft_vae_model:
            return None
        try:
            return self.registry.draft_decoder()
        except ModelMissing as exc:
            log.warning("%s; drafts decode with the full VAE", exc)
            self.settings = self.settings.replace(draft_decoder="full")
            return None

    def preview(self, latents: torch.Tensor, size: int = 256) -> bytes:
        """The live preview of a running final: TAESDXL when it is there, else the linear latent map."""
        decoder = None
        if self.settings.draft_vae_model:
            try:
                decoder = self.registry.draft_decoder()
            except ModelMissing:
                decoder = None
        return latent_preview(latents, size, decoder, preview_detail_of(self.settings))


def _fused(unet) -> bool:
    """Whether the UNet runs fused QKV projections (``ENGINE_FUSE_QKV``)."""
    return any(type(proc).__name__.startswith("Fused") for proc in unet.attn_processors.values())


@contextlib.contextmanager
def unfused(unet) -> Iterator[None]:
    """The UNet's unfused attention processors for a while, then the very same fused ones back.

    ``fuse_qkv_projections()`` again would build new ``to_qkv``/``to_kv`` modules: new storage, under the CUDA
    graphs captured with the old ones (``engine.graphs``). ``set_attn_processor`` pops from the dict it gets
    (``unfuse_qkv_projections()`` would empty the UNet's ``original_attn_processors`` for good), so both sides
    pass a copy. A UNet that is not fused is left alone."""
    if not _fused(unet):
        yield
        return
    fused = unet.attn_processors
    unet.set_attn_processor(dict(unet.original_attn_processors))
    try:
        yield
    finally:
        unet.set_attn_processor(fused)
