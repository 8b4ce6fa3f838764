"""How each kind of image is made, on loaded pipelines. Runs on the worker thread only.

The local engine (``engine.worker``) and the cluster's replicas (``engine.cluster.workers``) run the
same :class:`Recipes`. It is one object, built in layers, one module each:

- ``base``: the shared state (models, settings, the prompt cache of ``embeddings``) and the prompt
  craft of one run (LoRAs, the IP-Adapter reference, ``tile``); the add-ons load on first use.
- ``drafts``: SDXL Turbo drafts, batched, and Turbo image-to-image; the start image of any img2img job.
- ``inpaint``: finals with a mask (``/edit``, zoom out, pan).
- ``finals``: SSD-1B, or SDXL base + refiner; image-to-image (the upscale of a draft).
- here: the add-on recipes, upscale 2x (subtle or creative) and describe.

Every recipe returns latents and decodes them with ``images.decode_latents``, which upcasts the VAE
where float16 would overflow and refuses NaN or all-black images; ``images.StageClock`` times text
encoders, UNet and decode with CUDA events (no extra syncs). What keeps the fast path fast is a
setting each: see ``engine.settings`` and docs/PERFORMANCE.md.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable

import torch
from PIL import Image

from ..addons.settings import AddonMissing
from ..models import final_pipelines
from ..requests import DescribeRequest, RequestError, UpscaleRequest
from .finals import FinalRecipes
from .images import JobInterrupted, Outcome, StageClock

log = logging.getLogger(__name__)


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


class Recipes(FinalRecipes):
    """The image recipes over a :class:`engine.models.ModelRegistry`."""

    @torch.inference_mode()
    def upscale(
        self,
        request: UpscaleRequest,
        on_tile: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Outcome:
        """The image enlarged exactly 2x: the upscaler model (or Lanczos), then for "creative" an
        image-to-image pass of the final model over feathered tiles. The prompt defaults to the PNG's.

        ``on_tile`` hears of every tile of both passes; ``cancel`` stops the job after the current tile."""
        from ..addons.upscale import UpscaleError
        from ..canvas import open_image

        source = open_image(request.image, "image to upscale").convert("RGB")
        upscaler = self.upscaler()
        self.last_stages = {}
        clock = StageClock(self.registry.device)

        def tile_done(done: int, total: int) -> None:  # after each tile of either pass
            if on_tile is not None:
                on_tile(done, total)
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()

        try:
            if request.mode == "subtle":
                big = upscaler.subtle(source, on_tile=tile_done)
                clock.mark("upscale")
                self.last_stages = clock.seconds()
                return Outcome([big], 0, 0.0)
            prompt, negative = request.prompt, request.negative_prompt
            if not prompt:
                prompt, typed_negative = prompt_of_png(request.image)
                negative = negative or typed_negative
            pipe = self.registry.get(final_pipelines(request.model)[0]).img2img
            guidance = self.settings.final_guidance(request.model)
            cfg = guidance > 1.0
            embeds = self.embeddings(pipe, [prompt], [negative] if cfg else None, guidance=cfg)
            clock.mark("text")
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
        from ..output import parameters_text, read_parameters

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
        from ..addons.describe import DescribeError

        try:
            return self.describer().describe(request.image, count=request.count)
        except DescribeError as exc:
            raise RequestError(str(exc)) from None
        except AddonMissing as exc:
            log.error("describe: %s", exc)
            raise RequestError("Describe is not available on this bot right now.") from None
