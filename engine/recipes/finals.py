"""Finals: SSD-1B, or SDXL base for the first ``refiner_split`` of the schedule and the refiner for the
rest (ensemble of experts), handing latents over. With ``init`` a final runs image-to-image at
``strength`` (the upscale of a draft: the draft is made again from its seed, enlarged to the final size,
so the composition stays); with ``mask`` it inpaints (``engine.recipes.inpaint``). Finals keep the full
VAE (the fp16-fix VAE in float16 on a GPU); their live previews use TAESDXL.

With ``ENGINE_MEMORY=offload`` Turbo leaves the GPU before a final's models run (``engine.placement``):
the draft path's CUDA graphs are dropped first and captured again by the next drafts.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch

from ..requests import FinalRequest
from ..tiling import seamless
from .images import JobInterrupted, Outcome, StageClock, StepFn, decode_latents, generators
from .inpaint import InpaintRecipes


class FinalRecipes(InpaintRecipes):
    """Finals from text, from a start image, or (with a mask) inpainted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registry.placement.before_eviction(self._drop_draft_graphs)

    def _drop_draft_graphs(self) -> None:
        """Turbo is leaving the device: its graphs hold pointers to weights that move, and pools that would
        stay reserved through the final. They are captured again while the queue is idle."""
        self.drop_graphs()

    @torch.inference_mode()
    def final(
        self, request: FinalRequest, on_step: StepFn | None = None, cancel: threading.Event | None = None
    ) -> Outcome:
        if request.mask is not None:
            return self.inpaint(request, on_step, cancel)
        steps = request.steps or self.settings.final_steps
        guidance = self._guidance_of(request)
        total = self.planned_steps(request)
        self.last_stages = {}
        init = self.init_image(request.init, request.width, request.height) if request.init is not None else None
        draft_stages = self.last_stages
        self.registry.make_room()  # offload mode: Turbo off the GPU now that the start image is made
        common: dict[str, Any] = {"num_inference_steps": steps, "guidance_scale": guidance, "output_type": "latent"}
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
        # (Both branches end alike on purpose: each reads top to bottom, as a diffusers pipeline does.)
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
                    shape: dict[str, Any]
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
