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
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image

from .models import ModelRegistry
from .requests import DraftInit, DraftRequest, FinalRequest, ImageInit, Init, RequestError
from .settings import EngineSettings

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
    arr = (images.float() / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


@torch.inference_mode()
def decode_latents(vae, latents: torch.Tensor) -> list[Image.Image]:
    """Decode to PIL images; float16 VAEs with ``force_upcast`` decode in float32 (SDXL's VAE overflows)."""
    scaled = latents / vae.config.scaling_factor
    orig_dtype = vae.dtype
    upcast = orig_dtype == torch.float16 and vae.config.get("force_upcast", False)
    tries = [torch.float32] if upcast else [orig_dtype]
    if orig_dtype != torch.float32 and not upcast:
        tries.append(torch.float32)  # a fix-VAE that still overflows: one more try in float32
    try:
        for dtype in tries:
            if vae.dtype != dtype:
                vae.to(dtype)
            out = vae.decode(scaled.to(dtype), return_dict=False)[0]
            if torch.isfinite(out).all():
                break
            log.warning("VAE decode in %s gave NaN/inf", dtype)
        else:
            raise InvalidImage("The model produced an invalid image (NaN). Try another seed or prompt.")
    finally:
        if vae.dtype != orig_dtype:
            vae.to(orig_dtype)
    if bool((out <= -1.0).all()):
        raise InvalidImage("The model produced an all-black image. Try another seed or prompt.")
    return _to_pil(out)


def latent_preview(latents: torch.Tensor, size: int = 256) -> bytes:
    """A small PNG approximating the first image of ``latents`` (linear map, no decoder)."""
    lat = latents[0].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", lat, _LATENT_RGB) + _LATENT_RGB_BIAS
    rgb = ((rgb + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).numpy()
    img = Image.fromarray(rgb)
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def fit_image(data: bytes, width: int, height: int) -> Image.Image:
    """Decode an init image and cover-crop it to ``width`` x ``height``."""
    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
    return ImageOps.fit(img, (width, height), Image.LANCZOS)


class Recipes:
    """The image recipes over a :class:`ModelRegistry`."""

    def __init__(self, registry: ModelRegistry, settings: EngineSettings):
        self.registry = registry
        self.settings = settings
        self._inpaint: dict[str, object] = {}  # model name -> inpaint pipeline sharing its modules

    # ---- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _callback(on_step: StepFn | None, cancel: threading.Event | None, total: int):
        """A ``callback_on_step_end`` that reports progress and stops the pipeline when cancelled.

        It counts steps itself, so one callback spans both phases of base + refiner.
        """
        done = 0

        def cb(pipe, i, t, kwargs):
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(min(done, total), total, kwargs["latents"])
            if cancel is not None and cancel.is_set():
                pipe._interrupt = True
            return kwargs

        return cb

    def init_image(self, init: Init, width: int, height: int) -> Image.Image:
        """The start image of an image-to-image job, at the job's size."""
        if isinstance(init, ImageInit):
            return fit_image(init.data, width, height)
        assert isinstance(init, DraftInit)
        d = init.draft
        alone = DraftRequest(
            prompt=d.prompt,
            seed=d.seed + init.index,
            negative_prompt=d.negative_prompt,
            width=d.width,
            height=d.height,
            count=1,
            steps=d.steps,
            init=d.init,
            strength=d.strength,
        )
        source = self.drafts([alone])[0][0] if d.init is None else self.draft_img2img(alone).images[0]
        if source.size == (width, height):
            return source
        return source.resize((width, height), Image.LANCZOS)

    # ---- drafts ----------------------------------------------------------------------------

    @torch.inference_mode()
    def drafts(self, requests: list[DraftRequest], cancel: threading.Event | None = None) -> list[list[Image.Image]]:
        """Text-to-image drafts of several requests in one batch (same size and steps)."""
        pipe = self.registry.get("turbo").text2img
        first = requests[0]
        prompts, seeds = [], []
        for r in requests:
            prompts += [r.prompt] * r.count
            seeds += list(r.seeds)
        out = pipe(
            prompt=prompts,
            num_inference_steps=first.steps,
            guidance_scale=0.0,
            width=first.width,
            height=first.height,
            generator=generators(seeds),
            output_type="latent",
            callback_on_step_end=self._callback(None, cancel, first.steps),
        )
        if cancel is not None and cancel.is_set():
            raise JobInterrupted()
        images = decode_latents(pipe.vae, out.images)
        result, i = [], 0
        for r in requests:
            result.append(images[i : i + r.count])
            i += r.count
        return result

    @torch.inference_mode()
    def draft_img2img(self, request: DraftRequest, cancel: threading.Event | None = None) -> Outcome:
        """Drafts that start from an image (variations, an attachment): Turbo image-to-image."""
        assert request.init is not None
        init = self.init_image(request.init, request.width, request.height)
        pipe = self.registry.get("turbo").img2img
        out = pipe(
            prompt=[request.prompt] * request.count,
            image=[init] * request.count,
            strength=request.strength,
            num_inference_steps=request.steps,
            guidance_scale=0.0,
            generator=generators(list(request.seeds)),
            output_type="latent",
            callback_on_step_end=self._callback(None, cancel, request.steps),
        )
        if cancel is not None and cancel.is_set():
            raise JobInterrupted()
        return Outcome(decode_latents(pipe.vae, out.images), request.steps, 0.0)

    # ---- finals ----------------------------------------------------------------------------

    def planned_steps(self, request: FinalRequest) -> int:
        steps = request.steps or self.settings.final_steps
        if request.init is not None:
            return max(1, min(int(steps * request.strength), steps))
        return steps

    @torch.inference_mode()
    def final(
        self, request: FinalRequest, on_step: StepFn | None = None, cancel: threading.Event | None = None
    ) -> Outcome:
        if request.mask is not None:
            return self.inpaint(request, on_step, cancel)
        steps = request.steps or self.settings.final_steps
        guidance = request.guidance if request.guidance is not None else self.settings.final_guidance(request.model)
        total = self.planned_steps(request)
        common = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "output_type": "latent",
        }
        init = self.init_image(request.init, request.width, request.height) if request.init is not None else None
        gen = generators([request.seed])
        callback = self._callback(on_step, cancel, total)

        if request.model == "ssd-1b":
            model = self.registry.get("ssd-1b")
            if init is None:
                out = model.text2img(
                    width=request.width,
                    height=request.height,
                    generator=gen,
                    callback_on_step_end=callback,
                    **common,
                )
            else:
                out = model.img2img(
                    image=init,
                    strength=request.strength,
                    generator=gen,
                    callback_on_step_end=callback,
                    **common,
                )
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            return Outcome(decode_latents(model.img2img.vae, out.images), steps, guidance)

        # SDXL base + refiner, ensemble of experts.
        base = self.registry.get("sdxl-base")
        refiner = self.registry.get("sdxl-refiner").img2img
        split = request.refiner_split
        if init is not None and request.strength <= 1.0 - split:
            # Too little noise for the base's share: the refiner alone polishes the image.
            out = refiner(image=init, strength=request.strength, generator=gen, callback_on_step_end=callback, **common)
        else:
            if init is None:
                latents = base.text2img(
                    width=request.width,
                    height=request.height,
                    generator=gen,
                    denoising_end=split,
                    callback_on_step_end=callback,
                    **common,
                ).images
            else:
                latents = base.img2img(
                    image=init,
                    strength=request.strength,
                    generator=gen,
                    denoising_end=split,
                    callback_on_step_end=callback,
                    **common,
                ).images
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            out = refiner(
                image=latents,
                denoising_start=split,
                generator=gen,
                callback_on_step_end=callback,
                **common,
            )
        if cancel is not None and cancel.is_set():
            raise JobInterrupted()
        return Outcome(decode_latents(refiner.vae, out.images), steps, guidance)

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
        out = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            image=init,
            mask_image=mask,
            width=request.width,
            height=request.height,
            strength=request.strength,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators([request.seed]),
            output_type="latent",
            callback_on_step_end=self._callback(on_step, cancel, self.planned_steps(request)),
        )
        if cancel is not None and cancel.is_set():
            raise JobInterrupted()
        (painted,) = decode_latents(pipe.vae, out.images)
        return Outcome([keep_unmasked(painted, init, mask)], steps, guidance)


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
