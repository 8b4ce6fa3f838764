"""Latents in, pictures out: what every recipe shares around the pipelines.

Decoding (:func:`decode_each`, :func:`decode_latents`: upcast where float16 would overflow, refuse
NaN or all-black images one by one, so one bad image fails only its own job), live previews, start
images fitted to a job's size, one CPU generator per image, the step callback that reports progress
and stops a cancelled job, and :class:`StageClock`, which times the stages of a call with CUDA events
(no extra syncs).
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

# Step callback: (step done, total steps, latents) -> None
StepFn = Callable[[int, int, torch.Tensor], None]
# A decode in the model's dtype instead of the plain call (a CUDA graph of it): (vae, scaled latents) -> images
DecodeFn = Callable[[Any, torch.Tensor], torch.Tensor]

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
    pixels = (images.float() / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
    host = pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return [Image.fromarray(a) for a in host]


def plain_decode(vae, scaled: torch.Tensor) -> torch.Tensor:
    return vae.decode(scaled, return_dict=False)[0]


def dynamic_batch(*tensors: torch.Tensor) -> None:
    """Mark the batch dimension dynamic for compiled graphs: batches of 2 to 16 share one compiled graph.

    (Size 1 is always a graph of its own: torch.compile specializes sizes 0 and 1.) CUDA graphs are still
    recorded per distinct size, so padding batches to buckets keeps that to five.
    """
    for t in tensors:
        if t.shape[0] >= 2:
            torch._dynamo.mark_dynamic(t, 0)


class PartlyInvalid(InvalidImage):
    """Some requests of a batch got an invalid image, the others are fine.

    ``per_request`` holds, for each request of the batch in order, its images or the
    :class:`InvalidImage` that fails it alone. A caller that does not know this class fails the whole
    batch with the message, as before; the worker delivers the good ones (``engine.worker_loop``)."""

    def __init__(self, per_request: list[list[Image.Image] | InvalidImage]):
        failed = [item for item in per_request if isinstance(item, InvalidImage)]
        super().__init__(str(failed[0]) if failed else "invalid image")
        self.per_request = per_request


def split_per_request(images: list[Image.Image | InvalidImage], counts: list[int]) -> list[list[Image.Image]]:
    """The images of a batch, request by request (``counts`` images each); :class:`PartlyInvalid` when any is bad."""
    per_request: list[list[Image.Image] | InvalidImage] = []
    i = 0
    for count in counts:
        mine = images[i : i + count]
        i += count
        bad = next((item for item in mine if isinstance(item, InvalidImage)), None)
        per_request.append(bad if bad is not None else [item for item in mine if isinstance(item, Image.Image)])
    if any(isinstance(item, InvalidImage) for item in per_request):
        raise PartlyInvalid(per_request)
    return [item for item in per_request if not isinstance(item, InvalidImage)]


# vae -> its float32 copy (made once, kept while the VAE lives; never for an offloaded VAE)
_FLOAT32_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def float32_decoder(vae, device: torch.device):
    """A float32 copy of ``vae`` for the decodes float16 cannot do, leaving ``vae`` itself (and the CUDA
    graphs that read its weights) untouched; ``vae.to(float32)`` and back would move its storage.

    Made once and kept beside a resident VAE; made for the call and dropped for an offloaded one (its
    hooks say so: ``ENGINE_MEMORY=offload``), whose float16 weights wait in host memory. Seamless tiling
    (``engine.tiling``) switches the VAE's padding for a job: the copy follows it on every use."""
    offloaded = getattr(vae, "_hf_hook", None) is not None
    copy = None if offloaded else _FLOAT32_COPIES.get(vae)
    if copy is None:
        import copy as copying

        with torch.inference_mode(False), torch.no_grad():
            copy = copying.deepcopy(vae)
            for layer in copy.modules():  # Module.compile() wraps the original's forward: the copy runs eagerly
                layer.__dict__.pop("_compiled_call_impl", None)
            if offloaded:
                from accelerate.hooks import remove_hook_from_module

                remove_hook_from_module(copy, recurse=True)
            copy.to(device=device, dtype=torch.float32)
        if not offloaded:
            _FLOAT32_COPIES[vae] = copy
    for layer, twin in zip(vae.modules(), copy.modules(), strict=True):
        if isinstance(layer, torch.nn.Conv2d):
            twin.padding_mode = layer.padding_mode
    return copy


def drop_float32_copies() -> None:
    """Forget every kept float32 decoder copy (out of memory); the next float32 decode makes its own again."""
    _FLOAT32_COPIES.clear()


def _checks(out: torch.Tensor) -> tuple[list[bool], list[bool]]:
    """(finite, all black) per image, with one host sync."""
    flat = out.flatten(1)
    both = torch.stack([torch.isfinite(flat).all(1), (flat <= -1.0).all(1)])
    finite, black = both.tolist()
    return [bool(x) for x in finite], [bool(x) for x in black]


@torch.inference_mode()
def decode_each(
    vae, latents: torch.Tensor, compiled: bool = False, decode: DecodeFn | None = None
) -> list[Image.Image | InvalidImage]:
    """Decode to PIL images, image by image checked: each is a picture or the :class:`InvalidImage` saying why not.

    Float16 VAEs with ``force_upcast`` decode in float32 (SDXL's VAE overflows). Works for ``AutoencoderKL``
    and ``AutoencoderTiny`` (TAESDXL, scaling factor 1). One host sync checks every image for NaN/inf and for
    all black; an image with NaN from a float16 (or bfloat16) decode is decoded again alone in float32, by
    :func:`float32_decoder`'s copy. ``decode(vae, scaled)`` replaces the plain call (a CUDA graph of it) in
    the model's dtype."""
    scaled = latents / vae.config.scaling_factor
    if compiled:
        dynamic_batch(scaled)
    dtype = vae.dtype
    upcast = dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        out = plain_decode(float32_decoder(vae, scaled.device), scaled.to(torch.float32))
    else:
        out = (decode if decode is not None else plain_decode)(vae, scaled.to(dtype))
    finite, black = _checks(out)
    images: list[Image.Image | InvalidImage] = list(_to_pil(out))
    for i, ok in enumerate(finite):
        if ok:
            continue
        log.warning("VAE decode of image %d in %s gave NaN/inf", i, torch.float32 if upcast else dtype)
        if not upcast and dtype != torch.float32:  # one more try, this image alone, in float32
            one = plain_decode(float32_decoder(vae, scaled.device), scaled[i : i + 1].to(torch.float32))
            (ok,), (black[i],) = _checks(one)
            if ok:
                images[i] = _to_pil(one)[0]
                continue
            log.warning("VAE decode of image %d in float32 gave NaN/inf", i)
        images[i] = InvalidImage("The model produced an invalid image (NaN). Try another seed or prompt.")
    for i, dark in enumerate(black):
        if dark and not isinstance(images[i], InvalidImage):
            images[i] = InvalidImage("The model produced an all-black image. Try another seed or prompt.")
    return images


def decode_latents(
    vae, latents: torch.Tensor, compiled: bool = False, decode: DecodeFn | None = None
) -> list[Image.Image]:
    """:func:`decode_each` for a job of its own: every image, or the first :class:`InvalidImage` raised."""
    images = decode_each(vae, latents, compiled, decode)
    for item in images:
        if isinstance(item, InvalidImage):
            raise item
    return [item for item in images if isinstance(item, Image.Image)]


def _png(img: Image.Image, size: int, detail: Callable[[Image.Image], Image.Image] | None = None) -> bytes:
    scale = size / max(img.size)
    img = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR
    )
    if detail is not None:
        img = detail(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def latent_preview(
    latents: torch.Tensor, size: int = 256, decoder=None, detail: Callable[[Image.Image], Image.Image] | None = None
) -> bytes:
    """A small PNG of the first image of ``latents``: decoded by ``decoder`` (TAESDXL) if given, else a linear map.

    With a decoder the latents are halved first (a 256 px preview needs no 1024 px decode). ``detail``
    (``engine.detail.preview_detail_of``) is added before encoding.
    """
    if decoder is not None:
        with torch.inference_mode():
            lat = latents[:1].to(decoder.device, decoder.dtype)
            if min(lat.shape[-2:]) >= 64:
                lat = torch.nn.functional.avg_pool2d(lat, 2)
            out = decoder.decode(lat / decoder.config.scaling_factor, return_dict=False)[0]
            if bool(torch.isfinite(out).all()):
                return _png(_to_pil(out)[0], size, detail)
    lat = latents[0].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", lat, _LATENT_RGB) + _LATENT_RGB_BIAS
    levels = ((rgb + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).numpy()
    return _png(Image.fromarray(levels), size, detail)


def fit_image(data: bytes, width: int, height: int) -> Image.Image:
    """Decode an init image and cover-crop it to ``width`` x ``height``."""
    with Image.open(io.BytesIO(data)) as opened:
        img = ImageOps.exif_transpose(opened).convert("RGB")
    return ImageOps.fit(img, (width, height), Image.Resampling.LANCZOS)


class StageClock:
    """Times the stages of one call ("text", "unet", "decode") without extra host-device syncs.

    On CUDA it records events and reads them only in :meth:`seconds`, after the decode has synced
    anyway (the NaN check); elsewhere it reads the host clock.
    """

    def __init__(self, device) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._events: list[tuple[str, torch.cuda.Event]] = []
        self._times: list[tuple[str, float]] = []
        self._start_event = self._event() if self.cuda else None
        self._start = time.perf_counter()

    @staticmethod
    def _event() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, stage: str) -> None:
        """The stage ``stage`` ends now (it began at the previous mark)."""
        if self.cuda:
            self._events.append((stage, self._event()))
        else:
            self._times.append((stage, time.perf_counter()))

    def seconds(self) -> dict[str, float]:
        spans: list[tuple[str, float]] = []
        if self._start_event is not None:
            if self._events:
                self._events[-1][1].synchronize()  # the stream is idle after the decode: this costs nothing
            before_event = self._start_event
            for stage, event in self._events:
                spans.append((stage, before_event.elapsed_time(event) / 1000))
                before_event = event
        else:
            before = self._start
            for stage, at in self._times:
                spans.append((stage, at - before))
                before = at
        out: dict[str, float] = {}
        for stage, spent in spans:
            out[stage] = round(out.get(stage, 0.0) + spent, 5)
        return out


def step_callback(
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


def guidance_kwargs(
    on_step: StepFn | None, cancel: threading.Event | None, total: int, guidance: float, cutoff: float
) -> dict[str, Any]:
    """The pipeline's step-callback arguments; guidance stops for the last ``cutoff`` of the steps."""
    until = None
    if cutoff > 0 and guidance > 1.0:
        until = max(1, math.ceil(total * (1.0 - cutoff)))
    kwargs: dict[str, Any] = {"callback_on_step_end": step_callback(on_step, cancel, total, until)}
    if until is not None:
        kwargs["callback_on_step_end_tensor_inputs"] = [
            "latents",
            "prompt_embeds",
            "add_text_embeds",
            "add_time_ids",
        ]
    return kwargs
