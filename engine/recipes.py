"""How each kind of image is made, on loaded pipelines. Runs on the worker thread only.

- Drafts: SDXL Turbo, guidance 0, 1-4 steps, one generator per image (seed, seed+1, ...),
  several requests in one batch when their shapes agree.
- Finals: SSD-1B, or SDXL base for the first ``refiner_split`` of the schedule and the
  refiner for the rest (ensemble of experts), handing latents over.
- Upscale of a draft: the draft is made again from its seed, enlarged to the final size and
  run image-to-image through the final model at ``strength``, so the composition stays.
- Inpainting (a final with ``mask``; ``/edit``, zoom out, pan): the final model's
  ``StableDiffusionXLInpaintPipeline`` (made with ``from_pipe``, sharing its modules); for "sdxl"
  the base alone runs the whole schedule (no refiner pass). The kept area is pasted back from the
  start image through a feathered mask, so it does not drift through the VAE.

Every recipe returns latents and decodes them with :func:`decode_latents`, which upcasts the
VAE where float16 would overflow and refuses NaN or all-black images.

What keeps the fast path fast (each a setting, see ``engine.settings``):

- Prompt embeddings come from a small LRU cache (:class:`PromptCache`): a reroll, a variation or
  an upscale of the same prompt never runs the text encoders again, and a batch encodes each
  distinct prompt once. The pipelines get ``prompt_embeds`` and never see the text.
- Text-to-image drafts run their own short loop (:meth:`Recipes.drafts`): cached embeddings,
  noise from the per-image CPU generators (outside any compiled graph), the Turbo UNet, the
  scheduler step, then the cheap TAESDXL decoder. With compiled graphs the batch is padded to a
  bucket (1, 2, 4, 8, 16) so every burst reuses one of five graphs; padding images are dropped.
- Finals keep the full VAE (the fp16-fix VAE in float16 on a GPU); their live previews use TAESDXL.
- :class:`StageClock` times text encoders, UNet and decode with CUDA events (no extra syncs).

Prompt craft (issue 13), each a request field whose default changes nothing:

- Weighted prompts (``(word:1.3)``, ``word++``, ``BREAK``, longer than 77 tokens) are encoded by
  compel (:class:`engine.prompts.WeightedPromptEncoder`) when :func:`engine.prompts.to_compel` finds
  weighting syntax; plain prompts take the pipeline's own encoder as before. Both are cached by the
  text as typed; embeddings of different lengths (long prompts) are padded with the empty prompt's
  chunk, as compel pads.
- :meth:`Recipes.craft` wraps one run: LoRAs (``LoraLibrary.applied``; the embedding cache is keyed
  by the active LoRAs, whose text-encoder layers change the embeddings), the IP-Adapter reference
  (base pass only) and ``tile`` (``engine.tiling.seamless`` on the UNet, the VAE and TAESDXL). Jobs
  with any of them skip CUDA graphs (captured for the plain modules).
- :meth:`Recipes.upscale` (2x, subtle or creative) and :meth:`Recipes.describe` run the add-ons.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .addons.settings import AddonMissing, AddonSettings, addon_settings_for
from .graphs import CudaGraphs
from .models import ModelMissing, ModelRegistry
from .prompts import WeightedPromptEncoder, to_compel
from .requests import (
    DescribeRequest,
    DraftInit,
    DraftRequest,
    FinalRequest,
    ImageInit,
    Init,
    RequestError,
    UpscaleRequest,
)
from .settings import BATCH_BUCKETS, EngineSettings
from .tiling import seamless

log = logging.getLogger(__name__)

# Step callback: (step done, total steps, latents) -> None
StepFn = Callable[[int, int, torch.Tensor], None]

# Approximate RGB of SDXL latents (as used for previews in ComfyUI); no extra weights needed.
_LATENT_RGB = torch.tensor(
    [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
)
_LATENT_RGB_BIAS = torch.tensor([0.1084, -0.0175, -0.0011])


class JobInterrupted(Exception):
    """The job was cancelled while running; raised after the pipeline stopped at a step boundary."""


class InvalidImage(RuntimeError):
    """The model produced NaN or an all-black image even after decoding in float32."""


@dataclass(frozen=True)
class Outcome:
    images: list[Image.Image]
    steps: int
    guidance: float


def generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per image: the same seed gives the same noise on any device."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def _to_pil(images: torch.Tensor) -> list[Image.Image]:
    """uint8 on the images' device, then one copy of the bytes to the host."""
    arr = (images.float() / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def _decode(vae, scaled: torch.Tensor) -> torch.Tensor:
    return vae.decode(scaled, return_dict=False)[0]


def dynamic_batch(*tensors: torch.Tensor) -> None:
    """Mark the batch dimension dynamic for compiled graphs: batches of 2 to 16 share one compiled graph.

    (Size 1 is always a graph of its own: torch.compile specializes sizes 0 and 1.) CUDA graphs are still
    recorded per distinct size, so padding batches to buckets keeps that to five.
    """
    for t in tensors:
        if t.shape[0] >= 2:
            torch._dynamo.mark_dynamic(t, 0)


@torch.inference_mode()
def decode_latents(vae, latents: torch.Tensor, compiled: bool = False, decode=None) -> list[Image.Image]:
    """Decode to PIL images; float16 VAEs with ``force_upcast`` decode in float32 (SDXL's VAE overflows).

    Works for ``AutoencoderKL`` and ``AutoencoderTiny`` (TAESDXL, scaling factor 1). One host sync
    checks for NaN/inf and for an all-black image together; a float16 decode with NaN is retried in
    float32 once. ``decode(vae, scaled)`` replaces the plain call (a CUDA graph of it) in the model's dtype.
    """
    scaled = latents / vae.config.scaling_factor
    if compiled:
        dynamic_batch(scaled)
    orig_dtype = vae.dtype
    upcast = orig_dtype == torch.float16 and vae.config.get("force_upcast", False)
    tries = [torch.float32] if upcast else [orig_dtype]
    if orig_dtype != torch.float32 and not upcast:
        tries.append(torch.float32)  # a fix-VAE that still overflows: one more try in float32
    try:
        for dtype in tries:
            if vae.dtype != dtype:
                vae.to(dtype)
            out = (decode if decode is not None and dtype == orig_dtype else _decode)(vae, scaled.to(dtype))
            finite, black = torch.stack([torch.isfinite(out).all(), (out <= -1.0).all()]).tolist()
            if finite:
                break
            log.warning("VAE decode in %s gave NaN/inf", dtype)
        else:
            raise InvalidImage("The model produced an invalid image (NaN). Try another seed or prompt.")
    finally:
        if vae.dtype != orig_dtype:
            vae.to(orig_dtype)
    if black:
        raise InvalidImage("The model produced an all-black image. Try another seed or prompt.")
    return _to_pil(out)


def _png(img: Image.Image, size: int) -> bytes:
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def latent_preview(latents: torch.Tensor, size: int = 256, decoder=None) -> bytes:
    """A small PNG of the first image of ``latents``: decoded by ``decoder`` (TAESDXL) if given, else a linear map.

    With a decoder the latents are halved first (a 256 px preview needs no 1024 px decode).
    """
    if decoder is not None:
        with torch.inference_mode():
            lat = latents[:1].to(decoder.device, decoder.dtype)
            if min(lat.shape[-2:]) >= 64:
                lat = torch.nn.functional.avg_pool2d(lat, 2)
            out = decoder.decode(lat / decoder.config.scaling_factor, return_dict=False)[0]
            if bool(torch.isfinite(out).all()):
                return _png(_to_pil(out)[0], size)
    lat = latents[0].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", lat, _LATENT_RGB) + _LATENT_RGB_BIAS
    rgb = ((rgb + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).numpy()
    return _png(Image.fromarray(rgb), size)


class StageClock:
    """Times the stages of one call ("text", "unet", "decode") without extra host-device syncs.

    On CUDA it records events and reads them only in :meth:`seconds`, after the decode has synced
    anyway (the NaN check); elsewhere it reads the host clock.
    """

    def __init__(self, device) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._marks: list[tuple[str, object]] = []
        self._start = self._now()

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self, stage: str) -> None:
        """The stage ``stage`` ends now (it began at the previous mark)."""
        self._marks.append((stage, self._now()))

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.cuda and self._marks:
            self._marks[-1][1].synchronize()  # the stream is idle after the decode: this costs nothing
        before = self._start
        for stage, at in self._marks:
            spent = before.elapsed_time(at) / 1000 if self.cuda else at - before  # type: ignore[union-attr]
            out[stage] = round(out.get(stage, 0.0) + spent, 5)
            before = at
        return out


@dataclass
class PromptEmbeds:
    """Text-encoder outputs of one text (batch of 1), on the device."""

    embeds: torch.Tensor
    pooled: torch.Tensor


@dataclass
class PromptCache:
    """A small LRU of prompt embeddings keyed by (text encoders, text); negative prompts share it."""

    size: int
    _items: OrderedDict = field(default_factory=OrderedDict)
    encoder_runs: int = 0  # calls of the text encoders (for tests and the benchmark)
    hits: int = 0

    def get(self, key: tuple) -> PromptEmbeds | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: tuple, value: PromptEmbeds) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def fit_image(data: bytes, width: int, height: int) -> Image.Image:
    """Decode an init image and cover-crop it to ``width`` x ``height``."""
    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
    return ImageOps.fit(img, (width, height), Image.LANCZOS)


def prompt_of_png(data: bytes) -> tuple[str, str]:
    """(prompt, negative prompt) from a PNG's ``parameters`` chunk; ("", "") when there is none."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            text = img.info.get("parameters") or ""
    except Exception:
        return "", ""
    lines = text.splitlines()
    if len(lines) < 2:
        return "", ""
    prompt_lines, negative = [], ""
    for line in lines[:-1]:
        if line.startswith("Negative prompt: "):
            negative = line.removeprefix("Negative prompt: ")
        elif not negative:
            prompt_lines.append(line)
    return "\n".join(prompt_lines), negative


class Recipes:
    """The image recipes over a :class:`ModelRegistry`."""

    def __init__(self, registry: ModelRegistry, settings: EngineSettings, addons: AddonSettings | None = None):
        self.registry = registry
        self.settings = settings
        self.addons = addons if addons is not None else addon_settings_for(settings)
        self._lora_library = None
        self._reference = None
        self._upscaler = None
        self._describer = None
        self._weighted: dict[int, WeightedPromptEncoder] = {}  # id(pipe) -> its compel encoder
        self._embed_tag: tuple = ()  # the active LoRAs: part of the embedding cache key
        self._inpaint: dict[str, object] = {}  # model name -> inpaint pipeline sharing its modules
        self.prompts = PromptCache(settings.prompt_cache_size)
        self.last_stages: dict[str, float] = {}  # seconds per stage of the last call ("text", "unet", "decode")
        self.last_batch: int = 0  # images the last draft batch ran at (after bucket padding)
        self._graphs: dict[int, CudaGraphs] = {}  # id(module) -> its CUDA graphs (registry.graphs on)

    # ---- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _callback(
        on_step: StepFn | None,
        cancel: threading.Event | None,
        total: int,
        guidance_until: int | None = None,
    ):
        """A ``callback_on_step_end`` that reports progress and stops the pipeline when cancelled.

        It counts steps itself, so one callback spans both phases of base + refiner. With
        ``guidance_until`` (a step count), classifier-free guidance stops after that many steps:
        the unconditional half of the batch is dropped and the rest runs at batch 1.
        """
        done = 0

        def cb(pipe, i, t, kwargs):
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(min(done, total), total, kwargs["latents"])
            if cancel is not None and cancel.is_set():
                pipe._interrupt = True
            if guidance_until is not None and done >= guidance_until and pipe.do_classifier_free_guidance:
                for name in ("prompt_embeds", "add_text_embeds", "add_time_ids"):
                    kwargs[name] = kwargs[name].chunk(2)[-1]
                pipe._guidance_scale = 0.0
            return kwargs

        return cb

    def _guidance_kwargs(self, on_step, cancel, total: int, guidance: float) -> dict:
        cutoff = self.settings.guidance_cutoff
        until = None
        if cutoff > 0 and guidance > 1.0:
            until = max(1, math.ceil(total * (1.0 - cutoff)))
        kwargs: dict[str, object] = {"callback_on_step_end": self._callback(on_step, cancel, total, until)}
        if until is not None:
            kwargs["callback_on_step_end_tensor_inputs"] = [
                "latents",
                "prompt_embeds",
                "add_text_embeds",
                "add_time_ids",
            ]
        return kwargs

    def embeddings(
        self, pipe, prompts: list[str], negative_prompts: list[str] | None = None, guidance: bool = False
    ) -> dict[str, torch.Tensor]:
        """Pipeline keyword arguments (``prompt_embeds`` ...) for one image per prompt, from the cache.

        Entries are keyed by the text encoders (the very modules: Turbo and SSD-1B share them when
        their weights are the same) and the text, so an upscale finds the embedding its draft made.
        SDXL encodes a negative prompt exactly like a prompt, and an empty one is zeros
        (``force_zeros_for_empty_prompt``), so negatives come from the same entries. The text
        encoders run once per call at most, on the distinct texts the cache does not hold.
        """
        encoders = (id(pipe.text_encoder) if pipe.text_encoder is not None else None, id(pipe.text_encoder_2))
        negatives = list(negative_prompts or [""] * len(prompts))
        zeros_for_empty = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", True))
        texts = list(prompts)
        if guidance:
            texts += [n for n in negatives if n or not zeros_for_empty]

        def key(text: str) -> tuple:
            return (encoders, text) if not self._embed_tag else (encoders, self._embed_tag, text)

        found: dict[str, PromptEmbeds] = {}
        for text in dict.fromkeys(texts):
            hit = self.prompts.get(key(text))
            if hit is not None:
                found[text] = hit
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        weighted = [t for t in missing if to_compel(t) is not None]
        missing = [t for t in missing if t not in weighted]
        for text in weighted:  # compel: weights, BREAK, prompts longer than 77 tokens
            encoded = self._weighted_encoder(pipe).encode(text)
            self.prompts.encoder_runs += 1
            found[text] = PromptEmbeds(encoded.prompt_embeds, encoded.pooled_prompt_embeds)
            self.prompts.put(key(text), found[text])
        if missing:
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=missing,
                device=pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
            self.prompts.encoder_runs += 1
            for j, text in enumerate(missing):
                found[text] = PromptEmbeds(embeds[j : j + 1], pooled[j : j + 1])
                self.prompts.put(key(text), found[text])
        lengths = {e.embeds.shape[1] for e in found.values()}
        if len(lengths) > 1:  # a long weighted prompt beside shorter ones: pad them all to the longest
            found = self._padded(pipe, found, max(lengths))
        out = {
            "prompt_embeds": torch.cat([found[p].embeds for p in prompts]),
            "pooled_prompt_embeds": torch.cat([found[p].pooled for p in prompts]),
        }
        if guidance:
            first = out["prompt_embeds"][:1], out["pooled_prompt_embeds"][:1]
            zero = PromptEmbeds(torch.zeros_like(first[0]), torch.zeros_like(first[1]))
            neg = [found[n] if (n or not zeros_for_empty) else zero for n in negatives]
            out["negative_prompt_embeds"] = torch.cat([e.embeds for e in neg])
            out["negative_pooled_prompt_embeds"] = torch.cat([e.pooled for e in neg])
        return out

    def _weighted_encoder(self, pipe) -> WeightedPromptEncoder:
        encoder = self._weighted.get(id(pipe))
        if encoder is None:
            encoder = self._weighted[id(pipe)] = WeightedPromptEncoder(pipe)
        return encoder

    def _padded(self, pipe, found: dict[str, PromptEmbeds], length: int) -> dict[str, PromptEmbeds]:
        """Embeddings made ``length`` tokens long with chunks of the empty prompt's embedding (as compel pads)."""
        empty, _, _, _ = pipe.encode_prompt(
            prompt=[""], device=pipe._execution_device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        out = {}
        for text, e in found.items():
            short = length - e.embeds.shape[1]
            if short > 0:
                chunks = empty.repeat(1, math.ceil(short / empty.shape[1]), 1)[:, :short].to(e.embeds.dtype)
                e = PromptEmbeds(torch.cat([e.embeds, chunks], dim=1), e.pooled)
            out[text] = e
        return out

    # ---- add-ons -----------------------------------------------------------------------------

    def lora_library(self):
        if self._lora_library is None:
            from .addons.lora import LoraLibrary

            self._lora_library = LoraLibrary(self.addons)
        return self._lora_library

    def reference_adapter(self):
        if self._reference is None:
            from .addons.reference import ReferenceAdapter

            self._reference = ReferenceAdapter(self.addons)
        return self._reference

    def upscaler(self):
        if self._upscaler is None:
            from .addons.upscale import Upscaler

            self._upscaler = Upscaler(self.addons, self.registry.device)
        return self._upscaler

    def describer(self):
        if self._describer is None:
            from .addons.describe import Describer

            self._describer = Describer(self.addons, self.registry.device)
        return self._describer

    @staticmethod
    def is_plain(request) -> bool:
        """No tile, LoRA or reference: the job may use the CUDA graphs of the plain modules."""
        return request.craft_key() == (False, (), ())

    @contextlib.contextmanager
    def craft(self, request: DraftRequest | FinalRequest, pipe, model: str, *tiled) -> Iterator[dict]:
        """LoRAs and the reference on ``pipe`` (of ``model``), ``tile`` on its UNet and VAE and on ``tiled``.

        Yields the extra keyword arguments of the pipeline call (``ip_adapter_image``); everything
        is undone on leaving, also when the job fails. Bad LoRAs or references raise RequestError.
        """
        from .addons.lora import LoraChoice, LoraError, lora_batch_key
        from .addons.reference import ReferenceImageError, load_reference_image

        extra: dict = {}
        with contextlib.ExitStack() as stack:
            if (request.loras or request.reference is not None) and _fused(pipe.unet):
                # Fused QKV projections bypass LoRA layers on to_q/to_k/to_v, and the IP-Adapter swaps the
                # processors: unfuse for this job, fuse again last (LoRA off, adapter gone: the plain weights).
                pipe.unet.unfuse_qkv_projections()
                stack.callback(pipe.unet.fuse_qkv_projections)
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
        return latent_preview(latents, size, decoder)

    def init_image(self, init: Init, width: int, height: int) -> Image.Image:
        """The start image of an image-to-image job, at the job's size."""
        if isinstance(init, ImageInit):
            return fit_image(init.data, width, height)
        assert isinstance(init, DraftInit)
        d = init.draft
        alone = replace(d, seed=d.seeds[init.index], count=1, chaos=0, strength=d.strengths[init.index])
        stages = self.last_stages
        source = self.drafts([alone])[0][0] if d.init is None else self.draft_img2img(alone).images[0]
        self.last_stages = {f"draft_{k}": v for k, v in self.last_stages.items()} | stages
        if source.size == (width, height):
            return source
        return source.resize((width, height), Image.LANCZOS)

    # ---- drafts ----------------------------------------------------------------------------

    @torch.inference_mode()
    def drafts(self, requests: list[DraftRequest], cancel: threading.Event | None = None) -> list[list[Image.Image]]:
        """Text-to-image drafts of several requests in one batch (same size and steps).

        Image ``i`` of a request has the noise of its own seed whatever else is in the batch, so it
        equals the image made alone (within float noise). Compiled graphs pad the batch to its bucket.
        """
        pipe = self.registry.get("turbo").text2img
        first = requests[0]
        prompts, seeds = [], []
        for r in requests:
            prompts += [r.prompt] * r.count
            seeds += list(r.seeds)
        images = len(prompts)
        fixed_shapes = self.registry.compiled or self.registry.graphs
        bucket = self.settings.batch_bucket(images) if fixed_shapes else images
        if bucket > images:  # padding images: the last prompt again, their pictures are dropped
            prompts += [prompts[-1]] * (bucket - images)
            seeds += [seeds[-1]] * (bucket - images)
        self.last_batch = bucket
        plain = self.is_plain(first)
        decoder = self.draft_decoder() or pipe.vae
        clock = StageClock(pipe._execution_device)
        with self.craft(first, pipe, "turbo", decoder) as extra:
            embeds = self.embeddings(pipe, prompts)
            if "ip_adapter_image" in extra:
                embeds["image_embeds"] = pipe.prepare_ip_adapter_image_embeds(
                    extra["ip_adapter_image"], None, pipe._execution_device, len(prompts), False
                )
            clock.mark("text")
            latents = self._turbo_loop(pipe, embeds, seeds, first.width, first.height, first.steps, cancel, plain)
            clock.mark("unet")
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            # The padded batch is decoded too (the decoder's graphs are per bucket as well); padding is dropped.
            decode = self._graphed(decoder, lambda x: _decode(decoder, x), "draft decoder") if plain else None
            graphed = None if decode is None else (lambda vae, x: decode(x))
            decoded = decode_latents(decoder, latents, self.registry.compiled, graphed)[:images]
        clock.mark("decode")
        self.last_stages = clock.seconds()
        result, i = [], 0
        for r in requests:
            result.append(decoded[i : i + r.count])
            i += r.count
        return result

    def _graphed(self, module, fn, name: str):
        """``fn`` through CUDA graphs per shape when the registry uses them, else None."""
        if not self.registry.graphs:
            return None
        graphs = self._graphs.get(id(module))
        if graphs is None:
            graphs = self._graphs[id(module)] = CudaGraphs(fn, name)
        return graphs

    def _turbo_loop(
        self, pipe, embeds: dict, seeds: list[int], width: int, height: int, steps: int, cancel, plain: bool = True
    ):
        """SDXL Turbo's text-to-image loop (guidance 0), as ``StableDiffusionXLPipeline.__call__`` runs it.

        No host-device syncs: the noise comes from CPU generators (one per image) and is copied once,
        the timesteps stay on the device, and nothing is read back before the decode.
        """
        unet, scheduler = pipe.unet, pipe.scheduler
        device = pipe._execution_device
        prompt_embeds = embeds["prompt_embeds"]
        dtype = prompt_embeds.dtype
        n = prompt_embeds.shape[0]
        gens = generators(seeds)
        scheduler.set_timesteps(steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        shape = (n, unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        latents = randn_tensor(shape, generator=gens, device=device, dtype=dtype) * scheduler.init_noise_sigma
        projection = int(embeds["pooled_prompt_embeds"].shape[-1])
        time_ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), dtype, projection)
        added = {"text_embeds": embeds["pooled_prompt_embeds"], "time_ids": time_ids.to(device).repeat(n, 1)}
        if "image_embeds" in embeds:  # the IP-Adapter's image embedding (a reference)
            added["image_embeds"] = embeds["image_embeds"]
        compiled = self.registry.compiled
        compiled_cuda = compiled and device.type == "cuda"
        graphed = None if not plain else self._graphed(
            unet,
            lambda x, t, e, te, ti: unet(
                x, t, encoder_hidden_states=e, added_cond_kwargs={"text_embeds": te, "time_ids": ti}, return_dict=False
            )[0],
            "Turbo UNet",
        )
        if compiled:
            dynamic_batch(prompt_embeds, added["text_embeds"], added["time_ids"])
        for t in scheduler.timesteps:
            if cancel is not None and cancel.is_set():
                break
            model_input = scheduler.scale_model_input(latents, t)
            if compiled:
                dynamic_batch(model_input)
            if compiled_cuda:
                torch.compiler.cudagraph_mark_step_begin()  # the last graph's outputs are consumed
            if graphed is not None:  # the timestep is a device tensor: it is copied in like the rest
                noise = graphed(model_input, t, prompt_embeds, added["text_embeds"], added["time_ids"])
            else:
                noise = unet(
                    model_input, t, encoder_hidden_states=prompt_embeds, added_cond_kwargs=added, return_dict=False
                )[0]
            latents = scheduler.step(noise, t, latents, generator=gens, return_dict=False)[0]
        return latents

    @torch.inference_mode()
    def draft_img2img(self, request: DraftRequest, cancel: threading.Event | None = None) -> Outcome:
        """Drafts that start from an image (variations, an attachment): Turbo image-to-image."""
        assert request.init is not None
        init = self.init_image(request.init, request.width, request.height)
        pipe = self.registry.get("turbo").img2img
        decoder = self.draft_decoder() or pipe.vae
        clock = StageClock(pipe._execution_device)
        strengths = request.strengths
        # Images of equal strength run as one call (all of them without chaos).
        groups: dict[float, list[int]] = {}
        for i, strength in enumerate(strengths):
            groups.setdefault(strength, []).append(i)
        latents: list = [None] * request.count
        with self.craft(request, pipe, "turbo", decoder) as extra:
            embeds = self.embeddings(pipe, [request.prompt] * request.count)
            clock.mark("text")
            for strength, indexes in groups.items():
                part = {k: v[indexes] for k, v in embeds.items()}
                out = pipe(
                    image=[init] * len(indexes),
                    strength=strength,
                    num_inference_steps=request.steps,
                    guidance_scale=0.0,
                    generator=generators([request.seeds[i] for i in indexes]),
                    output_type="latent",
                    callback_on_step_end=self._callback(None, cancel, request.steps),
                    **extra,
                    **part,
                )
                for j, i in enumerate(indexes):
                    latents[i] = out.images[j : j + 1]
            clock.mark("unet")
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            images = decode_latents(decoder, torch.cat(latents))
        clock.mark("decode")
        self.last_stages = clock.seconds()
        return Outcome(images, request.steps, 0.0)

    # ---- finals ----------------------------------------------------------------------------

    def planned_steps(self, request: FinalRequest) -> int:
        steps = request.steps or self.settings.final_steps
        if request.init is not None:
            return max(1, min(int(steps * request.strength), steps))
        return steps

    def _final_embeds(self, pipe, request: FinalRequest, guidance: float) -> dict:
        cfg = guidance > 1.0
        negatives = [request.negative_prompt] if cfg else None
        return self.embeddings(pipe, [request.prompt], negatives, guidance=cfg)

    @torch.inference_mode()
    def final(
        self, request: FinalRequest, on_step: StepFn | None = None, cancel: threading.Event | None = None
    ) -> Outcome:
        if request.mask is not None:
            return self.inpaint(request, on_step, cancel)
        steps = request.steps or self.settings.final_steps
        guidance = request.guidance if request.guidance is not None else self.settings.final_guidance(request.model)
        total = self.planned_steps(request)
        self.last_stages = {}
        init = self.init_image(request.init, request.width, request.height) if request.init is not None else None
        draft_stages = self.last_stages
        common = {"num_inference_steps": steps, "guidance_scale": guidance, "output_type": "latent"}
        gen = generators([request.seed])
        callback = self._guidance_kwargs(on_step, cancel, total, guidance)

        if request.model == "ssd-1b":
            model = self.registry.get("ssd-1b")
            pipe = model.text2img if init is None else model.img2img
            clock = StageClock(pipe._execution_device)
            with self.craft(request, pipe, "ssd-1b") as extra:
                embeds = self._final_embeds(pipe, request, guidance)
                clock.mark("text")
                if init is None:
                    size = {"width": request.width, "height": request.height}
                    out = pipe(generator=gen, **size, **callback, **common, **extra, **embeds)
                else:
                    out = pipe(
                        image=init, strength=request.strength, generator=gen, **callback, **common, **extra, **embeds
                    )
                clock.mark("unet")
                if cancel is not None and cancel.is_set():
                    raise JobInterrupted()
                images = decode_latents(pipe.vae, out.images)
            clock.mark("decode")
            self.last_stages = draft_stages | clock.seconds()
            return Outcome(images, steps, guidance)

        # SDXL base + refiner, ensemble of experts. LoRAs and the reference act on the base only.
        base = self.registry.get("sdxl-base")
        refiner = self.registry.get("sdxl-refiner").img2img
        clock = StageClock(refiner._execution_device)
        refiner_embeds = self._final_embeds(refiner, request, guidance)
        split = request.refiner_split
        with contextlib.ExitStack() as refining:
            if request.tile:
                refining.enter_context(seamless(refiner.unet, refiner.vae))
            if init is not None and request.strength <= 1.0 - split:
                # Too little noise for the base's share: the refiner alone polishes the image.
                clock.mark("text")
                out = refiner(
                    image=init, strength=request.strength, generator=gen, **callback, **common, **refiner_embeds
                )
            else:
                pipe = base.text2img if init is None else base.img2img
                with self.craft(request, pipe, "sdxl-base") as extra:
                    base_embeds = self._final_embeds(pipe, request, guidance)
                    clock.mark("text")
                    if init is None:
                        shape = {"width": request.width, "height": request.height}
                    else:
                        shape = {"image": init, "strength": request.strength}
                    latents = pipe(
                        generator=gen, denoising_end=split, **shape, **callback, **common, **extra, **base_embeds
                    ).images
                if cancel is not None and cancel.is_set():
                    raise JobInterrupted()
                out = refiner(
                    image=latents, denoising_start=split, generator=gen, **callback, **common, **refiner_embeds
                )
            clock.mark("unet")
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            images = decode_latents(refiner.vae, out.images)
        clock.mark("decode")
        self.last_stages = draft_stages | clock.seconds()
        return Outcome(images, steps, guidance)

    # ---- inpainting and outpainting ------------------------------------------------------------

    def inpaint_pipeline(self, model: str):
        """The inpaint pipeline of a final model (``from_pipe``: no weights are loaded twice)."""
        name = "sdxl-base" if model == "sdxl" else model
        pipe = self._inpaint.get(name)
        if pipe is None:
            from diffusers import StableDiffusionXLInpaintPipeline

            pipe = self.registry.derive(StableDiffusionXLInpaintPipeline, self.registry.get(name).text2img)
            self._inpaint[name] = pipe
        return pipe

    @torch.inference_mode()
    def inpaint(
        self, request: FinalRequest, on_step: StepFn | None = None, cancel: threading.Event | None = None
    ) -> Outcome:
        """Paint the white area of ``request.mask`` again over the start image."""
        assert request.init is not None and request.mask is not None
        steps = request.steps or self.settings.final_steps
        guidance = request.guidance if request.guidance is not None else self.settings.final_guidance(request.model)
        init = self.init_image(request.init, request.width, request.height)
        mask = fit_mask(request.mask, request.width, request.height)
        pipe = self.inpaint_pipeline(request.model)
        clock = StageClock(pipe._execution_device)
        with self.craft(request, pipe, "sdxl-base" if request.model == "sdxl" else request.model) as extra:
            embeds = self._final_embeds(pipe, request, guidance)
            clock.mark("text")
            out = pipe(
                image=init,
                mask_image=mask,
                width=request.width,
                height=request.height,
                strength=request.strength,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators([request.seed]),
                output_type="latent",
                **self._guidance_kwargs(on_step, cancel, self.planned_steps(request), guidance),
                **extra,
                **embeds,
            )
            clock.mark("unet")
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            (painted,) = decode_latents(pipe.vae, out.images)
        clock.mark("decode")
        self.last_stages = clock.seconds()
        return Outcome([keep_unmasked(painted, init, mask)], steps, guidance)

    # ---- upscale 2x and describe ----------------------------------------------------------------

    @torch.inference_mode()
    def upscale(
        self,
        request: UpscaleRequest,
        on_tile: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Outcome:
        """The image enlarged exactly 2x: the upscaler model (or Lanczos), then for "creative" an
        image-to-image pass of the final model over feathered tiles. The prompt defaults to the PNG's."""
        from .addons.upscale import UpscaleError
        from .canvas import open_image

        source = open_image(request.image, "image to upscale").convert("RGB")
        upscaler = self.upscaler()
        self.last_stages = {}
        clock = StageClock(self.registry.device)
        try:
            if request.mode == "subtle":
                big = upscaler.subtle(source)
                clock.mark("upscale")
                self.last_stages = clock.seconds()
                return Outcome([big], 0, 0.0)
            prompt, negative = request.prompt, request.negative_prompt
            if not prompt:
                prompt, typed_negative = prompt_of_png(request.image)
                negative = negative or typed_negative
            name = "sdxl-base" if request.model == "sdxl" else request.model
            pipe = self.registry.get(name).img2img
            guidance = self.settings.final_guidance(request.model)
            cfg = guidance > 1.0
            embeds = self.embeddings(pipe, [prompt], [negative] if cfg else None, guidance=cfg)
            clock.mark("text")

            def tile_done(done: int, total: int) -> None:
                if on_tile is not None:
                    on_tile(done, total)
                if cancel is not None and cancel.is_set():
                    raise JobInterrupted()

            big = upscaler.creative(
                source, pipe, prompt_kwargs={**embeds, "guidance_scale": guidance}, seed=request.seed, on_tile=tile_done
            )
        except UpscaleError as exc:
            log.error("upscale failed: %s", exc)
            raise RequestError("The upscaler of this bot is broken; its log says why.") from None
        clock.mark("unet")
        self.last_stages = clock.seconds()
        return Outcome([big], self.addons.upscale_steps, guidance)

    def upscale_parameters(self, request: UpscaleRequest, image: Image.Image) -> str:
        """The ``parameters`` text of an upscaled image: the source's, with the upscale appended."""
        from .output import parameters_text, read_parameters

        upscaled = [f"Hires upscale: 2, Hires upscaler: {self.upscaler().name()}, Upscale mode: {request.mode}"]
        if request.mode == "creative":
            upscaled.append(f"Hires denoising strength: {self.addons.upscale_strength:g}")
        try:
            source = read_parameters(request.image)
        except Exception:
            source = None
        if source:
            return source.rstrip() + ", " + ", ".join(upscaled)
        return parameters_text(
            prompt=request.prompt or "(upscaled image)",
            negative_prompt=request.negative_prompt,
            steps=self.addons.upscale_steps if request.mode == "creative" else 0,
            guidance=0.0,
            seed=request.seed,
            width=image.width,
            height=image.height,
            model=request.model,
            extra=tuple(upscaled),
        )

    def describe(self, request: DescribeRequest) -> list[str]:
        """Three or four prompt suggestions for the image (the describe add-on)."""
        from .addons.describe import DescribeError

        try:
            return self.describer().describe(request.image, count=request.count)
        except DescribeError as exc:
            raise RequestError(str(exc)) from None
        except AddonMissing as exc:
            log.error("describe: %s", exc)
            raise RequestError("Describe is not available on this bot right now.") from None

    # ---- warm-up -----------------------------------------------------------------------------

    def warm_up_drafts(self, width: int = 512, height: int = 512, steps: int = 1) -> list[int]:
        """Run a draft batch at every bucket size so compiled graphs exist before users ask (buckets run)."""
        done = []
        for bucket in BATCH_BUCKETS:
            if bucket > self.settings.max_batch_images:
                break
            request = DraftRequest("warm-up", seed=0, width=width, height=height, count=1, steps=steps)
            self.drafts([request] * bucket)
            done.append(bucket)
        return done


def _fused(unet) -> bool:
    """Whether the UNet runs fused QKV projections (``fast_kernels``)."""
    return any(type(proc).__name__.startswith("Fused") for proc in unet.attn_processors.values())


def fit_mask(data: bytes, width: int, height: int) -> Image.Image:
    """Decode a mask (white = repaint), cover-crop it like :func:`fit_image` and make it black or white.

    Raises :class:`RequestError` for bytes that are no image and for a mask with nothing to repaint.
    """
    from PIL import ImageOps

    from .canvas import mask_image, open_image

    mask = mask_image(open_image(data, "mask"))
    if mask.size != (width, height):
        mask = ImageOps.fit(mask, (width, height), Image.BILINEAR)
    mask = mask.point(lambda v: 255 if v >= 128 else 0)
    if mask.getbbox() is None:
        raise RequestError("The mask has no white area, so there is nothing to repaint.")
    return mask


def keep_unmasked(painted: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """``painted`` inside the mask, ``original`` outside, blended over a few pixels at the edge."""
    from PIL import ImageFilter

    radius = max(2, min(mask.size) // 128)
    soft = mask.filter(ImageFilter.MaxFilter(2 * (radius // 2) + 1)).filter(ImageFilter.GaussianBlur(radius))
    return Image.composite(painted, original.convert("RGB"), soft)
