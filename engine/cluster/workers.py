"""The cluster's GPU workers: Ray Serve deployments that run the same ``engine.recipes`` as the local engine.

- :class:`DraftWorker` batches text-to-image drafts with ``@serve.batch`` (a batch is counted in
  images), runs each group of same-shape drafts (``DraftRequest.batch_key``) as one ``Recipes.drafts``
  call; every image keeps its own seed. Image-to-image drafts and describe jobs run alone.
- :class:`FinalWorker` runs ``Recipes.final`` (and upscales) and streams progress and previews; when
  the caller goes away (the bot cancelled: it closed the stream) the pipeline stops at its next step.

Every worker replica loads its models with the same ``EngineSettings`` and runs all GPU work on one
thread (pipelines and schedulers hold state), and encodes PNGs on two others. Each answers with
frames (``engine.cluster.wire``); the ingress (``engine.cluster.ingress``) passes them on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator

from ray import serve

from ..detail import detail_of
from ..models import final_pipelines
from ..output import encode_result
from ..requests import DescribeRequest, DraftRequest, FinalRequest, RequestError, UpscaleRequest
from ..settings import EngineSettings
from . import wire

log = logging.getLogger(__name__)

DRAFTS = "DraftWorker"
FINALS = "FinalWorker"

class _Worker:
    """What both worker deployments share: models, one GPU thread, two encoder threads."""

    def __init__(self, settings: EngineSettings, preload: list[str]):

        # Import the pipeline classes here, before any other thread does: a first import of
        # transformers' image processors (torchvision) from a second thread can fail half-way.
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline  # noqa: F401

        from ..device import offload_batch_limit, quiet_libraries, resolve_device, resolve_dtype, resolve_memory
        from ..models import ModelRegistry
        from ..recipes import Recipes

        self.device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, self.device)
        # As engine.worker does: the peak depends on the final model and fused QKV; offload caps the batch.
        self.memory = resolve_memory(settings.memory, self.device, settings.final_model, settings.fuse_qkv)
        if self.memory == "offload":
            settings = settings.replace(max_batch_images=offload_batch_limit(self.device, settings.max_batch_images))
        self.settings = settings
        quiet_libraries()
        self.registry = ModelRegistry(settings, self.device, dtype, self.memory)
        self.recipes = Recipes(self.registry, settings)
        self._gpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-gpu")
        self._encoder = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="engine-png")
        if settings.preload:
            self._gpu.submit(self._preload, preload).result()  # the replica is ready once its models are
        name = type(self).__name__
        log.info("%s ready on %s (memory %s, preset %s)", name, self.device, self.memory, settings.preset)

    def _preload(self, names: list[str]) -> None:
        """Load the models before the replica takes work. A failure fails the replica (Serve reports
        it and tries again) rather than leaving a replica that fails every job."""
        for name in names:
            self.registry.get(name)

    async def _on_gpu(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._gpu, lambda: fn(*args, **kwargs))

    async def _encode(self, request, images, steps: int, guidance: float, timings: dict, batch_size: int) -> bytes:
        """PNG-encode on an encoder thread; one ``result`` frame."""

        detail = detail_of(self.settings)

        def encode() -> bytes:
            upscale_parameters = self.recipes.upscale_parameters
            result = encode_result(
                request, images, steps, guidance, timings, batch_size, upscale_parameters, detail=detail
            )
            return wire.result_frame(result)

        return await asyncio.get_running_loop().run_in_executor(self._encoder, encode)


def failure_frame(exc: BaseException) -> bytes:
    """The ``error`` frame for an exception raised by a recipe (the same words the local engine uses)."""
    from ..device import is_oom
    from ..models import ModelLoadError, ModelMissing
    from ..recipes.images import InvalidImage, JobInterrupted

    if isinstance(exc, JobInterrupted):
        return wire.error_frame("cancelled", "cancelled while running")
    if isinstance(exc, RequestError):
        return wire.error_frame("request", str(exc))
    if isinstance(exc, ModelMissing | ModelLoadError | InvalidImage):
        return wire.error_frame("failed", str(exc))
    if is_oom(exc):
        return wire.error_frame("failed", "Out of GPU memory for this image; try a smaller size or fewer images.")
    log.error("job failed", exc_info=exc)
    return wire.error_frame("failed", f"The image engine failed: {exc.__class__.__name__}. Please retry.")


def _images_of(items: list[tuple[str, DraftRequest, float]]) -> int:
    return sum(request.count for _, request, _ in items)


class DraftWorker(_Worker):
    """SDXL Turbo drafts; text-to-image drafts are batched across callers."""

    def __init__(self, settings: EngineSettings, batch_wait_s: float):
        super().__init__(settings, ["turbo"])
        # @serve.batch adds these setters at run time; Ray types the method as the plain coroutine.
        self.batched.set_max_batch_size(settings.max_batch_images)  # type: ignore[attr-defined]
        self.batched.set_batch_wait_timeout_s(batch_wait_s)  # type: ignore[attr-defined]

    async def run(self, job_id: str, payload: dict) -> bytes:
        """One draft job: one frame (``result`` or ``error``)."""
        received = time.monotonic()
        try:
            request = wire.decode_request(payload).validate()
        except (RequestError, wire.WireError) as exc:
            return wire.error_frame("request", str(exc))
        if isinstance(request, DescribeRequest):
            return await self._describe(request, received)
        if not isinstance(request, DraftRequest):
            return wire.error_frame("request", "A final was sent to the draft workers.")
        if request.init is not None:
            return await self._alone(request, received)
        return await self.batched((job_id, request, received))

    async def _describe(self, request: DescribeRequest, received: float) -> bytes:
        started = time.monotonic()
        try:
            suggestions = await self._on_gpu(self.recipes.describe, request)
        except Exception as exc:
            return failure_frame(exc)
        timings = {"queued": round(started - received, 4), "run": round(time.monotonic() - started, 4)}
        return await self._encode(request, suggestions, 0, 0.0, timings, 1)

    async def _alone(self, request: DraftRequest, received: float) -> bytes:
        started: list[float] = []

        def make():
            started.append(time.monotonic())
            return self.recipes.draft_img2img(request)

        try:
            out = await self._on_gpu(make)
        except Exception as exc:
            return failure_frame(exc)
        timings = {"queued": round(started[0] - received, 4), "run": round(time.monotonic() - started[0], 4)}
        return await self._encode(request, out.images, out.steps, out.guidance, timings, 1)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005, batch_size_fn=_images_of)
    async def batched(self, items: list[tuple[str, DraftRequest, float]]) -> list[bytes]:
        """A Serve batch (at most ``max_batch_images`` images): each same-shape group is one GPU call."""
        groups: dict[tuple, list[int]] = {}
        for index, (_, request, _) in enumerate(items):
            groups.setdefault(request.batch_key(), []).append(index)
        lines: list[bytes | None] = [None] * len(items)
        for indexes in groups.values():
            requests = [items[i][1] for i in indexes]
            received = [items[i][2] for i in indexes]
            for positions, reqs in await self._run_group(indexes, requests, received):
                for i, line in zip(positions, reqs, strict=True):
                    lines[i] = line
        return lines  # type: ignore[return-value]

    async def _run_group(self, indexes: list[int], requests: list[DraftRequest], received: list[float]):
        """Run one group; if the batch fails (out of memory), run its requests one by one.

        ``received``: when each request reached this replica (its ``queued`` time starts there)."""
        from ..recipes.images import InvalidImage, PartlyInvalid

        started = time.monotonic()
        try:
            per_request = await self._on_gpu(self.recipes.drafts, requests)
        except PartlyInvalid as exc:  # an invalid image fails its own request; the others are delivered
            per_request = exc.per_request
        except Exception as exc:
            if len(requests) == 1:
                return [(indexes, [failure_frame(exc)])]
            log.warning("a batch of %d drafts failed (%s); running them one by one", len(requests), exc)
            out = []
            for index, request, when in zip(indexes, requests, received, strict=True):
                out += await self._run_group([index], [request], [when])
            return out
        run_s = round(time.monotonic() - started, 4)

        async def frame(r: DraftRequest, images, when: float) -> bytes:
            if isinstance(images, InvalidImage):
                return failure_frame(images)
            timings = {"queued": round(started - when, 4), "run": run_s}
            return await self._encode(r, images, r.steps, 0.0, timings, len(requests))

        lines = await asyncio.gather(*(frame(*args) for args in zip(requests, per_request, received, strict=True)))
        return [(indexes, list(lines))]


class FinalWorker(_Worker):
    """SSD-1B and SDXL base + refiner finals, streamed step by step."""

    def __init__(self, settings: EngineSettings):
        super().__init__(settings, final_pipelines(settings.final_model))

    async def run(self, job_id: str, payload: dict) -> AsyncIterator[bytes]:
        """Progress frames while the final runs, then one ``result`` or ``error`` frame.

        If the caller goes away (Serve cancels this generator), the pipeline stops at its next step.
        """
        try:
            request = wire.decode_request(payload).validate()
        except (RequestError, wire.WireError) as exc:
            yield wire.error_frame("request", str(exc))
            return
        if not isinstance(request, FinalRequest | UpscaleRequest):
            yield wire.error_frame("request", "A draft was sent to the final workers.")
            return
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[bytes] = asyncio.Queue()
        cancel = threading.Event()
        every = self.settings.preview_every

        def on_step(step: int, total: int, latents) -> None:  # on the GPU thread
            preview = None
            if every and step % every == 0 and step < total:
                preview = self.recipes.preview(latents)  # as the local engine's: TAESDXL, detail
            loop.call_soon_threadsafe(events.put_nowait, wire.progress_frame(step, total, preview))

        queued_at = time.monotonic()
        started: list[float] = []

        def make():
            started.append(time.monotonic())
            if cancel.is_set():
                from ..recipes.images import JobInterrupted

                raise JobInterrupted()
            if isinstance(request, UpscaleRequest):

                def on_tile(done: int, total: int) -> None:
                    loop.call_soon_threadsafe(events.put_nowait, wire.progress_frame(done, total, None))

                return self.recipes.upscale(request, on_tile=on_tile, cancel=cancel)
            return self.recipes.final(request, on_step=on_step, cancel=cancel)

        task = asyncio.ensure_future(loop.run_in_executor(self._gpu, make))
        getter: asyncio.Future[bytes] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not events.empty():
                    yield events.get_nowait()
                break
            try:
                out = task.result()
            except Exception as exc:
                yield failure_frame(exc)
                return
            begin = started[0] if started else queued_at
            timings = {"queued": round(begin - queued_at, 4), "run": round(time.monotonic() - begin, 4)}
            yield await self._encode(request, out.images, out.steps, out.guidance, timings, 1)
        finally:
            if getter is not None and not getter.done():
                getter.cancel()  # cancelled while waiting: no task is left pending on the queue
            if not task.done():
                cancel.set()  # the caller went away: stop at the next step
                log.info("final %s stopped: the caller cancelled", job_id)


# Deployments made by a call, not a class decorator: a type checker keeps a decorated class's type.
draft_deployment = serve.deployment(name=DRAFTS)(DraftWorker)
final_deployment = serve.deployment(name=FINALS, max_ongoing_requests=1)(FinalWorker)
