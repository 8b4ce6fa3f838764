"""Inpainting and outpainting: a final with ``mask`` (``/edit``, zoom out, pan).

The final model's ``StableDiffusionXLInpaintPipeline`` (made with ``from_pipe``, sharing its modules)
paints the white area of the mask again over the start image; for "sdxl" the base alone runs the
whole schedule (no refiner pass). The kept area is pasted back from the start image through a
feathered mask, so it does not drift through the VAE.
"""

from __future__ import annotations

import threading

import torch
from PIL import Image, ImageFilter, ImageOps

from ..canvas import mask_image, open_image
from ..models import final_pipelines
from ..requests import FinalRequest, RequestError
from .drafts import DraftRecipes
from .images import JobInterrupted, Outcome, StageClock, StepFn, decode_latents, generators


def fit_mask(data: bytes, width: int, height: int) -> Image.Image:
    """Decode a mask (white = repaint), cover-crop it like :func:`fit_image` and make it black or white.

    Raises :class:`RequestError` for bytes that are no image and for a mask with nothing to repaint.
    """
    mask = mask_image(open_image(data, "mask"))
    if mask.size != (width, height):
        mask = ImageOps.fit(mask, (width, height), Image.Resampling.BILINEAR)
    mask = mask.point(lambda v: 255 if v >= 128 else 0)
    if mask.getbbox() is None:
        raise RequestError("The mask has no white area, so there is nothing to repaint.")
    return mask


def keep_unmasked(painted: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """``painted`` inside the mask, ``original`` outside, blended over a few pixels at the edge."""
    radius = max(2, min(mask.size) // 128)
    soft = mask.filter(ImageFilter.MaxFilter(2 * (radius // 2) + 1)).filter(ImageFilter.GaussianBlur(radius))
    return Image.composite(painted, original.convert("RGB"), soft)


class InpaintRecipes(DraftRecipes):
    """Finals with a mask, on the final model's inpaint pipeline."""

    def inpaint_pipeline(self, model: str):
        """The inpaint pipeline of a final model (``from_pipe``: no weights are loaded twice)."""
        name = final_pipelines(model)[0]
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
        guidance = self._guidance_of(request)
        init = self.init_image(request.init, request.width, request.height)
        mask = fit_mask(request.mask, request.width, request.height)
        pipe = self.inpaint_pipeline(request.model)
        clock = StageClock(pipe._execution_device)
        with self.craft(request, pipe, final_pipelines(request.model)[0]) as extra:
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
