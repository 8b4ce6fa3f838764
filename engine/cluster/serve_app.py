"""The cluster side: Ray Serve deployments that run the same ``engine.recipes`` as the local engine.

Three deployments make one Serve application (``build_app``):

- :class:`Ingress` answers HTTP through Serve's proxy: it checks the shared secret (bearer
  ``ENGINE_TOKEN``), reports health and capacity (``GET /health``), and runs a job (``POST /jobs``),
  answering with a stream of NDJSON lines (``engine.cluster.wire``).
- :class:`DraftWorker` batches text-to-image drafts with ``@serve.batch`` (a batch is counted in
  images), runs each group of same-shape drafts (``DraftRequest.batch_key``) as one ``Recipes.drafts``
  call; every image keeps its own seed. Image-to-image drafts run alone.
- :class:`FinalWorker` runs ``Recipes.final`` and streams progress and previews; when the caller goes
  away (the bot cancelled: it closed the stream) the pipeline stops at its next step.

Every worker replica loads its models with the same ``EngineSettings`` and runs all GPU work on one
thread (pipelines and schedulers hold state), and encodes PNGs on two others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..api import EngineOffer
from ..output import encode_images, encode_upscaled
from ..requests import DescribeRequest, DraftRequest, FinalRequest, RequestError, UpscaleRequest
from ..results import JobResult
from ..settings import EngineSettings
from . import wire

log = logging.getLogger(__name__)

APP_NAME = "imagine"
DRAFTS = "DraftWorker"
FINALS = "FinalWorker"
WORKER_LOST = (RayActorError, ActorUnavailableError)


@dataclass(frozen=True)
class Scaling:
    """Replicas and resources of one worker deployment."""

    min_replicas: int = 1
    max_replicas: int = 1
    gpus: float = 0.0  # per replica; fractions share a GPU between replicas
    cpus: float = 1.0
    target_ongoing: float = 1.0  # autoscaling: requests in flight per replica it aims for

    def options(self) -> dict:
        """``Deployment.options`` for these numbers: fixed replicas, or autoscaling between min and max."""
        actor = {"num_gpus": self.gpus, "num_cpus": self.cpus}
        if self.max_replicas > self.min_replicas:
            return {
                "ray_actor_options": actor,
                "autoscaling_config": {
                    "min_replicas": self.min_replicas,
                    "max_replicas": self.max_replicas,
                    "initial_replicas": self.min_replicas,
                    "target_ongoing_requests": self.target_ongoing,
                },
            }
        return {"ray_actor_options": actor, "num_replicas": self.min_replicas}


# --------------------------------------------------------------------------- workers


class _Worker:
    """What both worker deployments share: models, one GPU thread, two encoder threads."""

    def __init__(self, settings: EngineSettings, preload: list[str]):
        import torch

        # Import the pipeline classes here, before any other thread does: a first import of
        # transformers' image processors (torchvision) from a second thread can fail half-way.
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline  # noqa: F401

        from ..device import quiet_libraries, resolve_device, resolve_memory
        from ..models import ModelRegistry
        from ..recipes import Recipes

        self.settings = settings
        self.device = resolve_device(settings.device)
        dtype = torch.float16 if self.device.startswith(("cuda", "mps")) else torch.float32
        self.memory = resolve_memory(settings.memory, self.device)
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
        """PNG-encode on an encoder thread; one ``result`` line."""

        def encode() -> bytes:
            started = time.monotonic()
            suggestions: tuple[str, ...] = ()
            if isinstance(request, DescribeRequest):
                generated, suggestions = (), tuple(images)
            elif isinstance(request, UpscaleRequest):
                generated = encode_upscaled(request, images[0], self.recipes.upscale_parameters(request, images[0]))
            else:
                generated = encode_images(request, images, steps, guidance)
            done = dict(timings, encode=round(time.monotonic() - started, 4))
            result = JobResult(generated, request.model, request, steps, guidance, done, batch_size, suggestions)
            return wire.result_line(result)

        return await asyncio.get_running_loop().run_in_executor(self._encoder, encode)


def failure_line(exc: BaseException) -> bytes:
    """The ``error`` line for an exception raised by a recipe (the same words the local engine uses)."""
    from ..device import is_oom
    from ..models import ModelLoadError, ModelMissing
    from ..recipes import InvalidImage, JobInterrupted

    if isinstance(exc, JobInterrupted):
        return wire.error_line("cancelled", "cancelled while running")
    if isinstance(exc, RequestError):
        return wire.error_line("request", str(exc))
    if isinstance(exc, ModelMissing | ModelLoadError | InvalidImage):
        return wire.error_line("failed", str(exc))
    if is_oom(exc):
        return wire.error_line("failed", "Out of GPU memory for this image; try a smaller size or fewer images.")
    log.error("job failed", exc_info=exc)
    return wire.error_line("failed", f"The image engine failed: {exc.__class__.__name__}. Please retry.")


def _images_of(items: list[tuple[str, DraftRequest, float]]) -> int:
    return sum(request.count for _, request, _ in items)


@serve.deployment(name=DRAFTS)
class DraftWorker(_Worker):
    """SDXL Turbo drafts; text-to-image drafts are batched across callers."""

    def __init__(self, settings: EngineSettings, batch_wait_s: float):
        super().__init__(settings, ["turbo"])
        self.batched.set_max_batch_size(settings.max_batch_images)
        self.batched.set_batch_wait_timeout_s(batch_wait_s)

    async def run(self, job_id: str, payload: dict) -> bytes:
        """One draft job: one NDJSON line (``result`` or ``error``)."""
        received = time.monotonic()
        try:
            request = wire.decode_request(payload).validate()
        except (RequestError, wire.WireError) as exc:
            return wire.error_line("request", str(exc))
        if isinstance(request, DescribeRequest):
            return await self._describe(request, received)
        if not isinstance(request, DraftRequest):
            return wire.error_line("request", "A final was sent to the draft workers.")
        if request.init is not None:
            return await self._alone(request, received)
        return await self.batched((job_id, request, received))

    async def _describe(self, request: DescribeRequest, received: float) -> bytes:
        started = time.monotonic()
        try:
            suggestions = await self._on_gpu(self.recipes.describe, request)
        except Exception as exc:
            return failure_line(exc)
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
            return failure_line(exc)
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
        started = time.monotonic()
        try:
            per_request = await self._on_gpu(self.recipes.drafts, requests)
        except Exception as exc:
            if len(requests) == 1:
                return [(indexes, [failure_line(exc)])]
            log.warning("a batch of %d drafts failed (%s); running them one by one", len(requests), exc)
            out = []
            for index, request, when in zip(indexes, requests, received, strict=True):
                out += await self._run_group([index], [request], [when])
            return out
        run_s = round(time.monotonic() - started, 4)
        lines = await asyncio.gather(
            *(
                self._encode(r, images, r.steps, 0.0, {"queued": round(started - when, 4), "run": run_s}, len(requests))
                for r, images, when in zip(requests, per_request, received, strict=True)
            )
        )
        return [(indexes, list(lines))]


@serve.deployment(name=FINALS, max_ongoing_requests=1)
class FinalWorker(_Worker):
    """SSD-1B and SDXL base + refiner finals, streamed step by step."""

    def __init__(self, settings: EngineSettings):
        finals = ["ssd-1b"] if settings.final_model == "ssd-1b" else ["sdxl-base", "sdxl-refiner"]
        super().__init__(settings, finals)

    async def run(self, job_id: str, payload: dict) -> AsyncIterator[bytes]:
        """Progress lines while the final runs, then one ``result`` or ``error`` line.

        If the caller goes away (Serve cancels this generator), the pipeline stops at its next step.
        """
        try:
            request = wire.decode_request(payload).validate()
        except (RequestError, wire.WireError) as exc:
            yield wire.error_line("request", str(exc))
            return
        if not isinstance(request, FinalRequest | UpscaleRequest):
            yield wire.error_line("request", "A draft was sent to the final workers.")
            return
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[bytes] = asyncio.Queue()
        cancel = threading.Event()
        every = self.settings.preview_every

        def on_step(step: int, total: int, latents) -> None:  # on the GPU thread
            preview = None
            if every and step % every == 0 and step < total:
                from ..recipes import latent_preview

                preview = latent_preview(latents)
            loop.call_soon_threadsafe(events.put_nowait, wire.progress_line(step, total, preview))

        queued_at = time.monotonic()
        started: list[float] = []

        def make():
            started.append(time.monotonic())
            if cancel.is_set():
                from ..recipes import JobInterrupted

                raise JobInterrupted()
            if isinstance(request, UpscaleRequest):

                def on_tile(done: int, total: int) -> None:
                    loop.call_soon_threadsafe(events.put_nowait, wire.progress_line(done, total, None))

                return self.recipes.upscale(request, on_tile=on_tile, cancel=cancel)
            return self.recipes.final(request, on_step=on_step, cancel=cancel)

        task = asyncio.ensure_future(loop.run_in_executor(self._gpu, make))
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
                yield failure_line(exc)
                return
            begin = started[0] if started else queued_at
            timings = {"queued": round(begin - queued_at, 4), "run": round(time.monotonic() - begin, 4)}
            yield await self._encode(request, out.images, out.steps, out.guidance, timings, 1)
        finally:
            if not task.done():
                cancel.set()  # the caller went away: stop at the next step
                log.info("final %s stopped: the caller cancelled", job_id)


# --------------------------------------------------------------------------- ingress


def _authorized(header: str | None, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").encode(), expected)


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class Ingress:
    """The HTTP door of the cluster: token check, health and capacity, job streams."""

    def __init__(
        self,
        drafts: DeploymentHandle,
        finals: DeploymentHandle,
        *,
        token: str,
        offer: dict,
        draft_scaling: Scaling,
        final_scaling: Scaling,
        draft_images_per_replica: int,
    ):
        self._drafts = drafts
        self._finals = finals
        self._token = token
        self._offer = offer
        self._draft_scaling = draft_scaling
        self._final_scaling = final_scaling
        self._draft_images = draft_images_per_replica
        self._replicas: dict[str, int] = {}
        self._replicas_at = 0.0

    async def __call__(self, http: HttpRequest) -> Response:
        if not _authorized(http.headers.get("authorization"), self._token):
            return JSONResponse({"error": "missing or wrong bearer token (ENGINE_TOKEN)"}, status_code=401)
        path = http.url.path.rstrip("/")
        if http.method == "GET" and path == "/health":
            return JSONResponse(await self._health())
        if http.method == "POST" and path == "/jobs":
            try:
                body = await http.json()
                job_id = str(body["job_id"])
                payload = body["request"]
                kind = payload["kind"]
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "body must be {job_id, request}"}, status_code=400)
            final_lane = kind in ("final", "upscale")
            stream = self._final_stream(job_id, payload) if final_lane else self._draft_stream(job_id, payload)
            return StreamingResponse(stream, media_type="application/x-ndjson")
        return JSONResponse({"error": f"no route {http.method} {path}"}, status_code=404)

    async def _draft_stream(self, job_id: str, payload: dict) -> AsyncIterator[bytes]:
        try:
            yield await self._drafts.run.remote(job_id, payload)
        except WORKER_LOST as exc:
            log.warning("draft job %s lost its replica: %s", job_id, exc.__class__.__name__)
            yield wire.error_line("worker_lost", "The GPU worker running this job stopped.")
        except Exception as exc:
            yield _ingress_failure(job_id, exc)

    async def _final_stream(self, job_id: str, payload: dict) -> AsyncIterator[bytes]:
        response = self._finals.options(stream=True).run.remote(job_id, payload)
        finished = False
        try:
            async for line in response:
                yield line
            finished = True
        except WORKER_LOST as exc:
            finished = True
            log.warning("final job %s lost its replica: %s", job_id, exc.__class__.__name__)
            yield wire.error_line("worker_lost", "The GPU worker running this job stopped.")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            finished = True
            yield _ingress_failure(job_id, exc)
        finally:
            if not finished:
                response.cancel()  # the bot closed the stream: stop the final at its next step

    async def _health(self) -> dict:
        replicas = await self._running_replicas()
        per_final = 1
        draft_replicas = replicas.get(DRAFTS, 0)
        final_replicas = replicas.get(FINALS, 0)
        return {
            "ok": draft_replicas > 0 and final_replicas > 0,
            "replicas": {"draft": draft_replicas, "final": final_replicas},
            # What the bot may have in flight at once, so Serve's own queues stay short (its FIFO
            # must not reorder the bot's fair queue). With autoscaling, one more replica's worth,
            # so demand can make the autoscaler add a replica.
            "capacity": {
                "draft_images": self._draft_images * _room(draft_replicas, self._draft_scaling),
                "final": per_final * _room(final_replicas, self._final_scaling),
            },
            "offer": self._offer,
        }

    async def _running_replicas(self) -> dict[str, int]:
        if time.monotonic() - self._replicas_at < 2.0:
            return self._replicas
        self._replicas = await asyncio.to_thread(_count_replicas)
        self._replicas_at = time.monotonic()
        return self._replicas


def _ingress_failure(job_id: str, exc: Exception) -> bytes:
    """A failure between the ingress and a worker (the workers answer their own errors as lines)."""
    log.error("job %s failed in the ingress", job_id, exc_info=exc)
    return wire.error_line("failed", f"The engine cluster failed: {exc.__class__.__name__}. Please retry.")


def _room(running: int, scaling: Scaling) -> int:
    if scaling.max_replicas > running and scaling.max_replicas > scaling.min_replicas:
        return running + 1
    return running


def _count_replicas() -> dict[str, int]:
    """RUNNING replicas of each deployment of this application, from the Serve controller."""
    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:
        log.warning("could not read the Serve status", exc_info=True)
        return {}
    if app is None:
        return {}
    return {name: d.replica_states.get("RUNNING", 0) for name, d in app.deployments.items()}


# --------------------------------------------------------------------------- the application


def offer_for(settings: EngineSettings) -> dict:
    """The ``EngineOffer`` fields (JSON) of an engine with these settings."""
    offer = EngineOffer(
        default_final_model=settings.final_model,
        draft_steps=settings.draft_steps,
        final_steps=settings.final_steps,
        upscale_strength=settings.upscale_strength,
        queue_max=settings.queue_max,
        preview_every=settings.preview_every,
        backend="ray",
    )
    from ..addons import offer_fields
    from ..addons.settings import addon_settings_for

    addons = offer_fields(addon_settings_for(settings))
    return {**offer.__dict__, **addons, "final_models": list(offer.final_models), "loras": list(addons["loras"])}


def build_app(
    settings: EngineSettings,
    *,
    token: str,
    drafts: Scaling = Scaling(),
    finals: Scaling = Scaling(),
    batch_wait_s: float = 0.005,
):
    """The Serve application: ingress -> draft and final workers, all on ``settings``."""
    if not token:
        raise ValueError("the cluster needs a token (ENGINE_TOKEN)")
    settings = replace(settings, preload=True)
    batch = settings.max_batch_images
    # A batch is counted in images; twice that in flight keeps a batch forming while one runs
    # (Serve's default max_ongoing_requests of 5 would cap batches).
    drafts = replace(drafts, target_ongoing=max(1.0, batch / 2))  # about one batch of 2-image drafts
    draft_worker = DraftWorker.options(max_ongoing_requests=2 * batch, **drafts.options()).bind(settings, batch_wait_s)
    final_worker = FinalWorker.options(**finals.options()).bind(settings)
    return Ingress.bind(
        draft_worker,
        final_worker,
        token=token,
        offer=offer_for(settings),
        draft_scaling=drafts,
        final_scaling=finals,
        draft_images_per_replica=2 * batch,
    )


def deploy(app, *, host: str = "127.0.0.1", port: int = 8000, blocking: bool = False) -> str:
    """Start Serve's HTTP proxy on ``host:port`` (loopback unless told otherwise) and run ``app``.

    Returns the URL the bot needs (``ENGINE_URL``).
    """
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"
