"""The worker thread of the local engine: the only code that touches the GPU after start-up.

:class:`WorkerLoop` holds what the thread and its callers share (the queue, the jobs, one lock) and
runs the loop: pop the next job, merge waiting drafts of the same shape into one batch
(:meth:`WorkerLoop._gather`), run the recipe (``engine.recipes``), and hand the images to a pool of
encoder threads (``ENGINE_ENCODE_THREADS``) that write PNGs and complete the futures, so the GPU thread
moves on at once. While nothing waits it captures the draft path's CUDA graphs, one shape at a time,
then loads the final model(s) (:meth:`WorkerLoop._idle_step`); jobs themselves never capture.
Out of memory: free the cache, retry the batch one job at a time, then fail only that job. The
caller's side (submit, cancel, the queue, health) is ``engine.worker.Engine``, built on this class.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .api import JobCancelled, JobFailed
from .detail import detail_of
from .device import is_oom
from .estimates import RunRates
from .models import final_pipelines
from .output import encode_result
from .queue import FairQueue, QueuedJob
from .requests import DescribeRequest, DraftRequest, Request, RequestError, UpscaleRequest
from .results import Progress
from .settings import EngineSettings

if TYPE_CHECKING:
    from .models import ModelRegistry
    from .recipes import Recipes

log = logging.getLogger(__name__)

ProgressFn = Callable[[Progress], None]


@dataclass(eq=False)
class WorkerJob:
    """The engine's bookkeeping for one submitted request."""

    job_id: str
    user: str
    request: Request
    future: concurrent.futures.Future
    on_progress: ProgressFn | None
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class WorkerLoop:
    """The GPU thread and the state it shares with its callers (all under ``_lock``)."""

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue = FairQueue(settings.queue_max, settings.final_not_starved_after_s)
        self._jobs: dict[str, WorkerJob] = {}  # waiting and running
        self._running: list[WorkerJob] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._encoder = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.encode_threads, thread_name_prefix="engine-png"
        )
        self._restarts = 0
        self._last_error: str | None = None
        self._rates = RunRates()
        self._registry: ModelRegistry | None = None
        self._recipes: Recipes | None = None
        self._ready = threading.Event()
        self._idle_loads: list[str] = []  # models to load when the queue is empty (worker thread only)
        self._busy_until = 0.0  # when the worker last finished a batch or an idle task (monotonic)
        self.lone_drafts = 0  # drafts that started at once: alone, on an idle engine (no gather window)

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise RuntimeError("Engine.start() must be called first.")
        return self._registry

    @property
    def recipes(self) -> Recipes:
        if self._recipes is None:
            raise RuntimeError("Engine.start() must be called first.")
        return self._recipes

    # ---- the thread ----------------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="engine-gpu", daemon=True)
        self._thread.start()

    def _restart_worker(self, why: str) -> None:
        with self._lock:
            if self._stopping or (self._thread is not None and self._thread.is_alive()):
                return
            self._restarts += 1
            self._last_error = why
            log.error("restarting the engine worker: %s", why)
            self._spawn_worker()

    def _thread_main(self) -> None:
        """Runs the worker loop; an unexpected error fails the jobs in hand and the loop goes on."""
        self.recipes.capture_in_jobs = False  # new draft shapes are captured while idle (_idle_step)
        if self.settings.preload and not self._ready.is_set():
            # The draft model first, so drafts are served as soon as possible; the final model(s)
            # load while the queue is empty (see _next_batch), or on the first final.
            self._preload(["turbo"])
            loaded = self.registry.loaded_names()
            self._idle_loads = [name for name in final_pipelines(self.settings.final_model) if name not in loaded]
            self._busy_until = time.monotonic()
        self._ready.set()
        while True:
            try:
                self._work()
                return  # stopping
            except BaseException as exc:  # the worker must never die silently
                log.critical("engine worker crashed; restarting it", exc_info=True)
                self._last_error = f"{exc.__class__.__name__}: {exc}"
                self._restarts += 1
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    return

    def _preload(self, names: list[str]) -> None:
        for name in names:
            try:
                self.registry.get(name)
            except Exception as exc:  # jobs that need it fail with the message; others keep serving
                log.error("could not load %s: %s", name, exc)

    def _idle_step(self) -> bool:
        """One piece of work while nothing waits, False when none is left: capture (or compile) the draft path
        at one missing shape (``Recipes.next_idle_capture``: shapes jobs ran eagerly, then the common buckets
        and aspects), else load one final model. One at a time, so a job that arrives waits for one at most."""
        registry, recipes = self._registry, self._recipes
        if registry is None or recipes is None:
            return False
        shape = None
        drafts_home = not registry.placement.drafts_away  # offload: Turbo comes back with the next draft, not here
        if (registry.graphs or registry.compiled) and drafts_home and "turbo" in registry.loaded_names():
            shape = recipes.next_idle_capture()
        if shape is not None:
            self._capture(shape)
        elif self._idle_loads:
            self._preload([self._idle_loads.pop(0)])  # nothing waits: use the time to load a final model
        else:
            return False
        self._busy_until = time.monotonic()  # a job that came meanwhile found the worker busy
        return True

    def _capture(self, shape: tuple[int, int, int, str]) -> None:
        started = time.monotonic()
        try:
            self.recipes.capture_draft_shape(shape)
        except Exception as exc:  # drafts of that shape still run, eagerly
            log.error("capturing the draft path for a batch of %d at %dx%d failed: %s", *shape[:3], exc)
            if is_oom(exc):
                self._free_memory()
            return
        log.info("draft path ready for a batch of %d at %dx%d in %.2fs", *shape[:3], time.monotonic() - started)

    # ---- batches -------------------------------------------------------------------------------

    def _next_batch(self) -> list[WorkerJob] | None:
        while True:
            with self._lock:
                idle = not self._stopping and len(self._queue) == 0
            if not idle or not self._idle_step():
                break
        with self._lock:
            while not self._stopping and len(self._queue) == 0:
                self._wake.wait()
            if self._stopping:
                return None
            first = self._queue.pop()
            assert first is not None
            batch = [first]
            request = first.request
            if isinstance(request, DraftRequest) and request.init is None:
                batch += self._gather(first.payload)
            jobs: list[WorkerJob] = [q.payload for q in batch]
            now = time.monotonic()
            for job in jobs:
                job.started_at = now
            self._running = jobs
            return jobs

    def _gather(self, job: WorkerJob) -> list[QueuedJob]:
        """Drafts that join ``job``'s batch: those waiting now, then those arriving within the gather window.

        Called with the lock held; waiting on the condition releases it, so submits go on. The window
        (``ENGINE_GATHER_MS``, a few ms) lets a burst of concurrent one-image drafts run as one batch; it is
        waited only when a burst is under way: another draft was waiting, or ``job`` arrived while the worker
        was busy. A lone draft on an idle engine starts at once.
        """
        request = job.request
        assert isinstance(request, DraftRequest)
        room = self.settings.max_batch_images - request.count
        key = request.batch_key()

        def fits(q: QueuedJob) -> bool:
            nonlocal room
            r = q.request
            if isinstance(r, DraftRequest) and r.init is None and r.batch_key() == key and r.count <= room:
                room -= r.count
                return True
            return False

        taken: list[QueuedJob] = []
        deadline = time.monotonic() + self.settings.gather_ms / 1000
        while room > 0:
            taken += self._queue.take_matching(fits, limit=self.settings.max_batch_images)
            if not taken and job.submitted_at >= self._busy_until:
                self.lone_drafts += 1
                break
            left = deadline - time.monotonic()
            if room <= 0 or left <= 0 or self._stopping:
                break
            self._wake.wait(left)
        return taken

    def _work(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                return
            try:
                self._execute(jobs)
            except BaseException:
                # A bug outside the recipes: fail the jobs in hand (the loop restarts in _thread_main).
                for job in jobs:
                    set_exception(job.future, JobFailed("The image engine hit an internal error; please retry."))
                raise
            finally:
                self._busy_until = time.monotonic()
                with self._lock:
                    self._running = []
                    for job in jobs:
                        self._jobs.pop(job.job_id, None)

    # ---- one batch -----------------------------------------------------------------------------

    def _execute(self, jobs: list[WorkerJob]) -> None:
        """Run a batch; on out-of-memory free the cache and retry once, split into single jobs."""
        live = [j for j in jobs if not j.cancel.is_set()]
        for job in jobs:
            if job.cancel.is_set():
                set_exception(job.future, JobCancelled("cancelled"))
        if not live:
            return
        try:
            self._run(live)
            return
        except Exception as exc:
            if not is_oom(exc):
                self._fail(live, exc)
                return
            log.warning("out of memory on a batch of %d job(s); retrying one by one", len(live))
        self._free_memory()
        for job in live:
            try:
                self._run([job])
            except Exception as exc:
                if is_oom(exc):
                    self._free_memory()
                    msg = "Out of GPU memory for this image; try a smaller size or fewer images."
                    set_exception(job.future, JobFailed(msg))
                else:
                    self._fail([job], exc)

    def _free_memory(self) -> None:
        self.recipes.free_memory()  # LoRAs unloaded, the reference's image encoder to host memory
        gc.collect()
        if self.registry.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _fail(self, jobs: list[WorkerJob], exc: Exception) -> None:
        from .models import ModelLoadError, ModelMissing
        from .recipes.images import InvalidImage, JobInterrupted

        for job in jobs:
            if isinstance(exc, JobInterrupted):
                set_exception(job.future, JobCancelled("cancelled while running"))
            elif isinstance(exc, InvalidImage | RequestError):  # written for users
                set_exception(job.future, JobFailed(str(exc)))
            elif isinstance(exc, ModelMissing | ModelLoadError):
                # The detail (paths, the loader's exception) is for the owner's log, not the job's message.
                log.error("job %s failed: %s", job.job_id, exc)
                model = job.request.model
                verb = "is not downloaded" if isinstance(exc, ModelMissing) else "failed to load"
                set_exception(
                    job.future, JobFailed(f"Model {model} {verb} on this bot; its log says why. Try another model.")
                )
            else:
                log.error("job %s failed", job.job_id, exc_info=exc)
                set_exception(job.future, JobFailed("The image engine failed on this job. Please retry."))

    def _run(self, jobs: list[WorkerJob]) -> None:
        """Make the images of ``jobs`` (one batch) and hand them to the encoders."""
        from .recipes.images import PartlyInvalid

        started = time.monotonic()
        recipes = self.recipes
        first = jobs[0].request
        outcomes: list[tuple[list[Any], int, float]]
        if isinstance(first, DraftRequest) and first.init is None:
            try:
                per_job = recipes.drafts([j.request for j in jobs if isinstance(j.request, DraftRequest)])
            except PartlyInvalid as exc:  # an invalid image fails its own job; the others are delivered
                per_job = exc.per_request  # type: ignore[assignment]
            outcomes = [(images, first.steps, 0.0) for images in per_job]
        elif isinstance(first, DraftRequest):
            out = recipes.draft_img2img(first, cancel=jobs[0].cancel)
            outcomes = [(out.images, out.steps, out.guidance)]
        elif isinstance(first, UpscaleRequest):
            job = jobs[0]
            out = recipes.upscale(first, on_tile=self._tile_progress_fn(job), cancel=job.cancel)
            outcomes = [(out.images, out.steps, out.guidance)]
        elif isinstance(first, DescribeRequest):
            outcomes = [(list(recipes.describe(first)), 0, 0.0)]
        else:
            job = jobs[0]
            out = recipes.final(first, on_step=self._progress_fn(job), cancel=job.cancel)
            outcomes = [(out.images, out.steps, out.guidance)]
        run_s = time.monotonic() - started
        stages = dict(recipes.last_stages)  # text encoders, UNet, decode (seconds)
        self._rates.learn(first.kind, sum(self._rates.units(j.request, recipes) for j in jobs), run_s)
        for job, (images, steps, guidance) in zip(jobs, outcomes, strict=True):
            if job.cancel.is_set():
                set_exception(job.future, JobCancelled("cancelled while running"))
                continue
            if isinstance(images, Exception):
                self._fail([job], images)
                continue
            timings = {"queued": round(started - job.submitted_at, 4), "run": round(run_s, 4), **stages}
            self._encoder.submit(self._finish, job, images, steps, guidance, timings, len(jobs))

    def _progress_fn(self, job: WorkerJob):
        on_progress = job.on_progress
        if on_progress is None:
            return None
        every = self.settings.preview_every

        def on_step(step: int, total: int, latents) -> None:
            preview = None
            if every and (step % every == 0) and step < total:
                preview = self.recipes.preview(latents)
            try:
                on_progress(Progress(job.job_id, step, total, preview))
            except Exception:  # a broken listener must not break the job
                log.exception("progress callback of job %s failed", job.job_id)

        return on_step

    def _tile_progress_fn(self, job: WorkerJob):
        """Progress of an upscale: one step per tile (the model's, then the redrawn ones), no preview."""
        on_progress = job.on_progress
        if on_progress is None:
            return None

        def on_tile(done: int, total: int) -> None:
            try:
                on_progress(Progress(job.job_id, done, total, None))
            except Exception:
                log.exception("progress callback of job %s failed", job.job_id)

        return on_tile

    def _finish(self, job: WorkerJob, images: list, steps: int, guidance: float, timings: dict, batch_size: int):
        """On an encoder thread: PNGs with parameters, then the result (a describe job's are suggestions)."""
        try:
            result = encode_result(
                job.request, images, steps, guidance, timings, batch_size, self.recipes.upscale_parameters,
                detail=detail_of(self.settings),
            )
            result.timings["total"] = round(time.monotonic() - job.submitted_at, 4)
            set_result(job.future, result)
        except Exception:
            log.exception("encoding job %s failed", job.job_id)  # the detail stays in the log
            set_exception(job.future, JobFailed("Could not encode the image. Please retry."))


def set_result(future: concurrent.futures.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def set_exception(future: concurrent.futures.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
