"""Drafts: SDXL Turbo, guidance 0, 1-4 steps, one generator per image (seed, seed+1, ...).

Text-to-image drafts run their own short loop (:meth:`DraftRecipes.drafts`): cached embeddings,
noise from the per-image CPU generators (outside any compiled graph), the Turbo UNet, the scheduler
step, then the cheap TAESDXL decoder; several requests run in one batch when their shapes agree.
With compiled graphs the batch is padded to a bucket (1, 2, 4, 8, 16) so every burst reuses one of
five graphs; padding images are dropped. Drafts from an image (variations, an attachment) run
Turbo's image-to-image pipeline; :meth:`DraftRecipes.init_image` makes the start image of any
image-to-image job, a draft made again from its seed or an upload fitted to the job's size.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from PIL import Image

from ..graphs import CudaGraphs
from ..requests import DraftInit, DraftRequest, ImageInit, Init
from ..settings import BATCH_BUCKETS
from .base import RecipeBase
from .graphed import GraphedForward, idle_shapes
from .images import (
    JobInterrupted,
    Outcome,
    StageClock,
    decode_each,
    decode_latents,
    dynamic_batch,
    fit_image,
    generators,
    plain_decode,
    split_per_request,
    step_callback,
)
from .turbo import TurboLoop

WARM_UP_PROMPT = "warm-up"


class DraftRecipes(RecipeBase):
    """Turbo drafts, text-to-image (batched) and image-to-image, and the start images of img2img jobs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turbo = TurboLoop()
        self._forwards: dict[int, GraphedForward] = {}  # id(module) -> its graphs with the eager fallback
        # Whether a job may capture a draft shape not captured yet. The local worker turns this off and
        # captures while its queue is idle (capture_draft_shape), so a job never waits for several captures.
        self.capture_in_jobs = True
        self._capturing = False
        self._wanted: list[tuple[int, int, int, str]] = []  # shapes jobs ran eagerly, to capture when idle
        self._idle_done: set[tuple[int, int, int, str]] = set()
        self._idle_plan: list[tuple[int, int, int]] | None = None

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
        return source.resize((width, height), Image.Resampling.LANCZOS)

    @torch.inference_mode()
    def drafts(self, requests: list[DraftRequest], cancel: threading.Event | None = None) -> list[list[Image.Image]]:
        """Text-to-image drafts of several requests in one batch (same size and steps).

        Image ``i`` of a request has the noise of its own seed whatever else is in the batch, so it
        equals the image made alone (within float noise). Compiled graphs pad the batch to its bucket.
        """
        pipe = self.registry.get("turbo").text2img
        first = requests[0]
        prompts: list[str] = []
        seeds: list[int] = []
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
            eager_before = self._eager_calls()
            latents = self._turbo_loop(pipe, embeds, seeds, first.width, first.height, first.steps, cancel, plain)
            clock.mark("unet")
            if cancel is not None and cancel.is_set():
                raise JobInterrupted()
            # The padded batch is decoded too (the decoder's graphs are per bucket as well); padding is dropped.
            graphs = self._graphed(decoder, lambda x: plain_decode(decoder, x), "draft decoder") if plain else None
            graphed = None if graphs is None else (lambda vae, x: graphs(x))
            decoded = decode_each(decoder, latents, self.registry.compiled, graphed)[:images]
        clock.mark("decode")
        if plain and self._eager_calls() > eager_before and not self._may_capture():
            self._want((bucket, first.width, first.height, prompts[0]))
        self.last_stages = clock.seconds()
        return split_per_request(decoded, [r.count for r in requests])  # PartlyInvalid: bad ones fail alone

    def _graphed(self, module, fn, name: str) -> GraphedForward | None:
        """``fn`` through CUDA graphs per shape if the registry uses them (eager after a failed capture), else None."""
        if not self.registry.graphs:
            return None
        forward = self._forwards.get(id(module))
        if forward is None:
            graphs = self._graphs.get(id(module))
            if graphs is None:
                graphs = self._graphs[id(module)] = CudaGraphs(fn, name, module)
            forward = self._forwards[id(module)] = GraphedForward(graphs, fn, self._may_capture)
        if forward.graphs.check():  # once per batch: the weights moved since the captures, which are dropped
            forward.captured.clear()  # eager until captured again, while idle like a new shape
            self._idle_done.clear()
        return forward

    def drop_graphs(self) -> None:
        """Forget every CUDA graph of the draft path and free their memory pools (Turbo leaves the GPU for a
        final in offload mode); the drafts after run eagerly and the idle plan captures them again."""
        for graphs in self._graphs.values():
            graphs.drop()
        self._graphs.clear()
        self._forwards.clear()
        self._idle_done.clear()

    def _eager_calls(self) -> int:
        return sum(f.eager_calls for f in self._forwards.values() if not f.failed)

    def _want(self, shape: tuple[int, int, int, str]) -> None:
        """Capture ``shape`` when idle, unless one of its (bucket, size) is already waiting (a prompt of another
        token count, whose shape differs, is wanted again by its next eager run)."""
        if shape not in self._idle_done and all(w[:3] != shape[:3] for w in self._wanted):
            self._wanted.append(shape)

    def _may_capture(self) -> bool:
        return self.capture_in_jobs or self._capturing

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        """New draft shapes may be captured (or compiled) inside: the worker's idle captures and warm-ups."""
        before, self._capturing = self._capturing, True
        try:
            yield
        finally:
            self._capturing = before

    def next_idle_capture(self) -> tuple[int, int, int, str] | None:
        """The next draft shape (bucket, width, height, prompt) to capture while idle: shapes jobs ran eagerly
        first, then the common ones (:func:`idle_shapes`); None when all are done."""
        left = self.idle_captures_left()
        return left[0] if left else None

    def idle_captures_left(self) -> list[tuple[int, int, int, str]]:
        """The draft shapes still to capture while idle, in order (benchmarks wait for none to be left)."""
        if self._idle_plan is None:
            self._idle_plan = list(idle_shapes(self.settings.max_batch_images, self.registry.compiled))
        planned = [(bucket, width, height, WARM_UP_PROMPT) for bucket, width, height in self._idle_plan]
        return [shape for shape in dict.fromkeys(self._wanted + planned) if shape not in self._idle_done]

    def capture_draft_shape(self, shape: tuple[int, int, int, str]) -> None:
        """Capture (or compile) the draft path at one shape: a batch of ``bucket`` one-step drafts, thrown away."""
        bucket, width, height, prompt = shape
        self._idle_done.add(shape)
        self._wanted = [w for w in self._wanted if w != shape]
        request = DraftRequest(prompt, seed=0, width=width, height=height, count=1, steps=1)
        with self.capturing():
            self.drafts([request] * bucket)

    def _turbo_loop(
        self,
        pipe,
        embeds: dict[str, torch.Tensor],
        seeds: list[int],
        width: int,
        height: int,
        steps: int,
        cancel: threading.Event | None,
        plain: bool = True,
    ) -> torch.Tensor:
        """SDXL Turbo's text-to-image loop (guidance 0): ``engine.recipes.turbo``, with no host-device sync."""
        unet = pipe.unet
        device = pipe._execution_device
        compiled = self.registry.compiled
        compiled_cuda = compiled and device.type == "cuda"
        graphed = None if not plain else self._graphed(
            unet,
            lambda x, t, e, te, ti: unet(
                x, t, encoder_hidden_states=e, added_cond_kwargs={"text_embeds": te, "time_ids": ti}, return_dict=False
            )[0],
            "Turbo UNet",
        )

        def unet_fn(x, t, e, added):
            if graphed is not None:  # the timestep is a device tensor: it is copied in like the rest
                return graphed(x, t, e, added["text_embeds"], added["time_ids"])
            return unet(x, t, encoder_hidden_states=e, added_cond_kwargs=added, return_dict=False)[0]

        def before_step(model_input: torch.Tensor) -> None:
            if compiled:
                dynamic_batch(model_input)
            if compiled_cuda:
                torch.compiler.cudagraph_mark_step_begin()  # the last graph's outputs are consumed

        mark = dynamic_batch if compiled else None
        return self._turbo.run(pipe, embeds, seeds, width, height, steps, cancel, unet_fn, before_step, mark)

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
        latents: list[Any] = [None] * request.count
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
                    callback_on_step_end=step_callback(None, cancel, request.steps),
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

    def warm_up_drafts(self, width: int = 512, height: int = 512, steps: int = 1) -> list[int]:
        """Run a draft batch at every bucket size so compiled graphs exist before users ask (buckets run)."""
        done = []
        for bucket in BATCH_BUCKETS:
            if bucket > self.settings.max_batch_images:
                break
            request = DraftRequest(WARM_UP_PROMPT, seed=0, width=width, height=height, count=1, steps=steps)
            with self.capturing():
                self.drafts([request] * bucket)
            self._idle_done.add((bucket, width, height, WARM_UP_PROMPT))  # the worker's idle plan skips it
            done.append(bucket)
        return done
