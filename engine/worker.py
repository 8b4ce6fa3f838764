"""The engine: one worker thread owns the GPU; callers submit frozen requests and get futures.

Where a request goes:

1. :meth:`Engine.submit` (any thread) validates it and puts it in the :class:`FairQueue`.
2. The worker thread (:meth:`Engine._work`) pops the next job, merges waiting drafts of the same
   shape into one batch, and runs the recipe (``engine.recipes``) on the GPU.
3. The images go to a small pool of encoder threads that write PNGs and complete the future,
   so the GPU thread moves on at once and the caller's event loop never waits.

The asyncio side awaits ``asyncio.wrap_future(handle.future)``.
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .api import EngineStopped, JobCancelled, JobFailed, QueueFull
from .device import is_oom, quiet_libraries, resolve_device, resolve_memory
from .output import encode_images, encode_upscaled
from .queue import FairQueue, QueuedJob
from .requests import (
    DescribeRequest,
    DraftRequest,
    FinalRequest,
    Request,
    RequestError,
    UpscaleRequest,
)
from .results import JobResult, Progress, QueueInfo
from .settings import EngineSettings

log = logging.getLogger(__name__)

ProgressFn = Callable[[Progress], None]
DRAFT_GRAPHS = "draft graphs"  # an idle task: compile the draft batch buckets


@dataclass
class JobHandle:
    job_id: str
    future: concurrent.futures.Future  # -> JobResult


@dataclass(eq=False)
class _Job:
    """The engine's bookkeeping for one submitted request."""

    job_id: str
    user: str
    request: Request
    future: concurrent.futures.Future
    on_progress: ProgressFn | None
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class Engine:
    """The image factory. Thread-safe; knows nothing of Discord."""

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue = FairQueue(settings.queue_max, settings.final_not_starved_after_s)
        self._jobs: dict[str, _Job] = {}  # waiting and running
        self._running: list[_Job] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._encoder = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="engine-png")
        self._ids = itertools.count(1)
        self._restarts = 0
        self._last_error: str | None = None
        # Seconds per unit of work (see _units), measured as jobs finish; start from a guess.
        self._rate: dict[str, float] = {}
        self.device = "cpu"
        self.memory = "resident"
        self.registry = None
        self.recipes = None
        self._ready = threading.Event()
        self.addon_offer: dict = {"loras": (), "reference": False, "upscaler": "", "describe": False}
        self._idle_loads: list[str] = []  # models to load when the queue is empty (worker thread only)

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> Engine:
        """Pick the device and start the worker thread; models load there, not here."""
        import torch

        from .models import ModelRegistry
        from .recipes import Recipes

        self.device = resolve_device(self.settings.device)
        dtype = torch.float16 if self.device.startswith(("cuda", "mps")) else torch.float32
        self.memory = resolve_memory(self.settings.memory, self.device)
        self.registry = ModelRegistry(self.settings, self.device, dtype, self.memory)
        self.recipes = Recipes(self.registry, self.settings)
        self.addon_offer = _addon_offer(self.recipes.addons)
        on_gpu = self.device != "cpu"
        self._rate = {"draft": 0.05 if on_gpu else 0.4, "final": 0.08 if on_gpu else 0.6}
        quiet_libraries()
        log.info("engine on %s (%s, memory %s, preset %s)", self.device, dtype, self.memory, self.settings.preset)
        self._spawn_worker()
        return self

    def _spawn_worker(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="engine-gpu", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the draft model is loaded (or failed to). For the command line and tests."""
        return self._ready.wait(timeout)

    def shutdown(self, timeout: float = 30.0) -> list[str]:
        """Stop taking work; give the running job up to ``timeout`` s, then stop it at its next step.

        Returns the ids of jobs that did not finish (they were not failed: run them again later).
        Their futures raise :class:`EngineStopped`.
        """
        with self._lock:
            self._stopping = True
            waiting = self._queue.order()
            for q in waiting:
                self._queue.remove(q.job_id)
            self._wake.notify_all()
        unfinished = [q.job_id for q in waiting]
        for q in waiting:
            job = self._jobs.pop(q.job_id, None)
            if job is not None:
                _set_exception(job.future, EngineStopped("the engine stopped before this job ran"))
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
            if thread.is_alive():
                with self._lock:
                    running = list(self._running)
                for job in running:
                    job.cancel.set()
                    unfinished.append(job.job_id)
                thread.join(10)
        self._encoder.shutdown(wait=True)
        return unfinished

    # ---- the caller's side ------------------------------------------------------------------

    def submit(
        self,
        request: Request,
        *,
        user: str,
        job_id: str | None = None,
        on_progress: ProgressFn | None = None,
    ) -> JobHandle:
        """Queue ``request``; raises RequestError (bad request) or QueueFull at once."""
        if not isinstance(request, DraftRequest | FinalRequest | UpscaleRequest | DescribeRequest):
            raise RequestError(f"Unknown request type {type(request).__name__}.")
        request.validate()
        if self.recipes is None:
            raise RuntimeError("Engine.start() must be called before submit().")
        self._check_addons(request)
        job_id = job_id or uuid.uuid4().hex
        future: concurrent.futures.Future = concurrent.futures.Future()
        job = _Job(job_id, str(user), request, future, on_progress)
        with self._lock:
            if self._stopping:
                raise QueueFull("The bot is shutting down; try again in a minute.")
            if job_id in self._jobs:
                raise RequestError(f"Job {job_id} is already queued.")
            if len(self._queue) >= self._queue.max_size:
                raise QueueFull(f"The queue is full ({self._queue.max_size} jobs); try again in a minute.")
            self._jobs[job_id] = job
            self._queue.push(QueuedJob(job_id, job.user, _lane(request), request, payload=job))
            self._wake.notify()
        if self._thread is None or not self._thread.is_alive():
            self._restart_worker("worker thread was not running")
        return JobHandle(job_id, future)

    def _check_addons(self, request: Request) -> None:
        """Refuse at once what needs an add-on this engine does not offer (the LoRA names against its library)."""
        offer = self.addon_offer
        if isinstance(request, DescribeRequest) and not offer["describe"]:
            raise RequestError("Describe is not available on this bot.")
        if not isinstance(request, DraftRequest | FinalRequest):
            return
        if request.reference is not None and not offer["reference"]:
            raise RequestError("Image reference is not available on this bot.")
        if request.loras:
            known = set(self.recipes.lora_library().names()) if offer["loras"] else set()
            for name, _ in request.loras:
                if name not in known:
                    raise RequestError(f"Unknown LoRA {name!r}: pick one from the list.")

    def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job (removed at once) or a running one (stops at its next step)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            if self._queue.remove(job_id) is not None:
                del self._jobs[job_id]
                waiting = True
            else:
                job.cancel.set()
                waiting = False
        if waiting:
            _set_exception(job.future, JobCancelled("cancelled while waiting"))
        return True

    def queue_info(self, job_id: str) -> QueueInfo:
        """Where one job stands (``state`` "unknown" once it is done or was never here)."""
        for info in self.queue_snapshot():
            if info.job_id == job_id:
                return info
        return QueueInfo(job_id, "unknown", -1, 0.0)

    def queue_snapshot(self) -> list[QueueInfo]:
        """Running jobs (position 0), then waiting ones in the order they will run, with ETAs."""
        with self._lock:
            running = list(self._running)
            order = self._queue.order()
        now = time.monotonic()
        infos: list[QueueInfo] = []
        ahead = 0.0
        for job in running:
            left = max(0.0, self._estimate(job.request) - (now - (job.started_at or now)))
            infos.append(QueueInfo(job.job_id, "running", 0, round(left, 1)))
            ahead = max(ahead, left)  # a batch runs together: the longest one is what waiting jobs wait for
        for position, q in enumerate(order, start=1):
            ahead += self._estimate(q.request)
            infos.append(QueueInfo(q.job_id, "waiting", position, round(ahead, 1)))
        return infos

    def health(self) -> dict:
        alive = self._thread is not None and self._thread.is_alive()
        registry = self.registry
        return {
            "ok": alive and not self._stopping,
            "worker_alive": alive,
            "device": self.device,
            "memory": self.memory,
            "models": registry.loaded_names() if registry else [],
            "failed_models": registry.failures() if registry else {},
            "waiting": len(self._queue),
            "running": [j.job_id for j in self._running],
            "restarts": self._restarts,
            "error": self._last_error,
        }

    # ---- estimates ---------------------------------------------------------------------------

    def _units(self, request: Request) -> float:
        if isinstance(request, UpscaleRequest):
            return 4.0 if request.mode == "creative" else 0.5
        if isinstance(request, DescribeRequest):
            return 1.0
        if isinstance(request, DraftRequest):
            return request.count * request.steps * request.width * request.height / 512**2
        steps = self.recipes.planned_steps(request) if self.recipes else (request.steps or 28)
        return steps * request.width * request.height / 1024**2

    def _estimate(self, request: Request) -> float:
        return self._units(request) * self._rate.get(request.kind, 1.0)

    def _learn(self, kind: str, units: float, seconds: float) -> None:
        if units > 0:
            self._rate[kind] = 0.7 * self._rate.get(kind, seconds / units) + 0.3 * (seconds / units)

    # ---- the worker thread --------------------------------------------------------------------

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
        if self.settings.preload and not self._ready.is_set():
            # The draft model first, so drafts are served as soon as possible; the final model(s)
            # load while the queue is empty (see _next_batch), or on the first final.
            self._preload(["turbo"])
            finals = ["ssd-1b"] if self.settings.final_model == "ssd-1b" else ["sdxl-base", "sdxl-refiner"]
            self._idle_loads = [name for name in finals if name not in self.registry.loaded_names()]
            if self.registry.compiled or self.registry.graphs:  # graphs for every draft bucket, while idle
                self._idle_loads.insert(0, DRAFT_GRAPHS)
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

    def _warm_up_drafts(self) -> None:
        started = time.monotonic()
        try:
            buckets = self.recipes.warm_up_drafts()
        except Exception as exc:  # drafts still run; their first batch of each size compiles then
            log.error("warming up the draft graphs failed: %s", exc)
            return
        log.info("draft graphs ready for batches of %s in %.1fs", buckets, time.monotonic() - started)

    def _next_batch(self) -> list[_Job] | None:
        while True:
            with self._lock:
                idle = not self._stopping and len(self._queue) == 0
                load = self._idle_loads.pop(0) if idle and self._idle_loads else None
            if load is None:
                break
            if load == DRAFT_GRAPHS:
                self._warm_up_drafts()
            else:
                self._preload([load])  # nothing waits: use the time to load a final model
        with self._lock:
            while not self._stopping and len(self._queue) == 0:
                self._wake.wait()
            if self._stopping:
                return None
            first = self._queue.pop()
            batch = [first]
            request = first.request
            if isinstance(request, DraftRequest) and request.init is None:
                batch += self._gather(request)
            jobs = [q.payload for q in batch]
            now = time.monotonic()
            for job in jobs:
                job.started_at = now
            self._running = jobs
            return jobs

    def _gather(self, request: DraftRequest) -> list[QueuedJob]:
        """Drafts that join ``request``'s batch: those waiting now, then those arriving within the gather window.

        Called with the lock held; waiting on the condition releases it, so submits go on. The window
        (``ENGINE_GATHER_MS``, a few ms) lets a burst of concurrent one-image drafts run as one batch.
        """
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
                    _set_exception(job.future, JobFailed("The image engine hit an internal error; please retry."))
                raise
            finally:
                with self._lock:
                    self._running = []
                    for job in jobs:
                        self._jobs.pop(job.job_id, None)

    def _execute(self, jobs: list[_Job]) -> None:
        """Run a batch; on out-of-memory free the cache and retry once, split into single jobs."""
        live = [j for j in jobs if not j.cancel.is_set()]
        for job in jobs:
            if job.cancel.is_set():
                _set_exception(job.future, JobCancelled("cancelled"))
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
                    _set_exception(job.future, JobFailed(msg))
                else:
                    self._fail([job], exc)

    def _free_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _fail(self, jobs: list[_Job], exc: Exception) -> None:
        from .models import ModelLoadError, ModelMissing
        from .recipes import InvalidImage, JobInterrupted

        for job in jobs:
            if isinstance(exc, JobInterrupted):
                _set_exception(job.future, JobCancelled("cancelled while running"))
            elif isinstance(exc, InvalidImage | RequestError):  # written for users
                _set_exception(job.future, JobFailed(str(exc)))
            elif isinstance(exc, ModelMissing | ModelLoadError):
                # The detail (paths, the loader's exception) is for the owner's log, not the job's message.
                log.error("job %s failed: %s", job.job_id, exc)
                model = job.request.model
                verb = "is not downloaded" if isinstance(exc, ModelMissing) else "failed to load"
                _set_exception(
                    job.future, JobFailed(f"Model {model} {verb} on this bot; its log says why. Try another model.")
                )
            else:
                log.error("job %s failed", job.job_id, exc_info=exc)
                _set_exception(job.future, JobFailed("The image engine failed on this job. Please retry."))

    def _run(self, jobs: list[_Job]) -> None:
        """Make the images of ``jobs`` (one batch) and hand them to the encoders."""
        started = time.monotonic()
        first = jobs[0].request
        if isinstance(first, DraftRequest) and first.init is None:
            per_job = self.recipes.drafts([j.request for j in jobs])
            outcomes = [(images, first.steps, 0.0) for images in per_job]
        elif isinstance(first, DraftRequest):
            out = self.recipes.draft_img2img(first, cancel=jobs[0].cancel)
            outcomes = [(out.images, out.steps, out.guidance)]
        elif isinstance(first, UpscaleRequest):
            job = jobs[0]
            out = self.recipes.upscale(first, on_tile=self._tile_progress_fn(job), cancel=job.cancel)
            outcomes = [(out.images, out.steps, out.guidance)]
        elif isinstance(first, DescribeRequest):
            outcomes = [(self.recipes.describe(first), 0, 0.0)]
        else:
            job = jobs[0]
            out = self.recipes.final(first, on_step=self._progress_fn(job), cancel=job.cancel)
            outcomes = [(out.images, out.steps, out.guidance)]
        run_s = time.monotonic() - started
        stages = dict(self.recipes.last_stages)  # text encoders, UNet, decode (seconds)
        self._learn(first.kind, sum(self._units(j.request) for j in jobs), run_s)
        for job, (images, steps, guidance) in zip(jobs, outcomes, strict=True):
            if job.cancel.is_set():
                _set_exception(job.future, JobCancelled("cancelled while running"))
                continue
            timings = {"queued": round(started - job.submitted_at, 4), "run": round(run_s, 4), **stages}
            self._encoder.submit(self._finish, job, images, steps, guidance, timings, len(jobs))

    def _progress_fn(self, job: _Job):
        if job.on_progress is None:
            return None
        every = self.settings.preview_every

        def on_step(step: int, total: int, latents) -> None:
            preview = None
            if every and (step % every == 0) and step < total:
                preview = self.recipes.preview(latents)
            try:
                job.on_progress(Progress(job.job_id, step, total, preview))
            except Exception:  # a broken listener must not break the job
                log.exception("progress callback of job %s failed", job.job_id)

        return on_step

    def _tile_progress_fn(self, job: _Job):
        """Progress of an upscale: one step per redrawn tile, no preview."""
        if job.on_progress is None:
            return None

        def on_tile(done: int, total: int) -> None:
            try:
                job.on_progress(Progress(job.job_id, done, total, None))
            except Exception:
                log.exception("progress callback of job %s failed", job.job_id)

        return on_tile

    def _finish(self, job: _Job, images, steps: int, guidance: float, timings: dict, batch_size: int) -> None:
        """On an encoder thread: PNGs with parameters, then the result (a describe job's are suggestions)."""
        try:
            started = time.monotonic()
            r = job.request
            model = r.model
            suggestions: tuple[str, ...] = ()
            if isinstance(r, DescribeRequest):
                generated, suggestions = (), tuple(images)
            elif isinstance(r, UpscaleRequest):
                generated = encode_upscaled(r, images[0], self.recipes.upscale_parameters(r, images[0]))
            else:
                generated = encode_images(r, images, steps, guidance)
            timings = dict(timings, encode=round(time.monotonic() - started, 4))
            timings["total"] = round(time.monotonic() - job.submitted_at, 4)
            result = JobResult(generated, model, r, steps, guidance, timings, batch_size, suggestions)
            _set_result(job.future, result)
        except Exception:
            log.exception("encoding job %s failed", job.job_id)  # the detail stays in the log
            _set_exception(job.future, JobFailed("Could not encode the image. Please retry."))


def _lane(request: Request) -> str:
    """The queue lane: drafts and describe in "draft", finals and upscales in "final"."""
    return getattr(request, "lane", request.kind)


def _addon_offer(addons) -> dict:
    """The add-on fields of the offer; an add-on whose check fails is simply not offered."""
    from .addons import offer_fields

    try:
        return offer_fields(addons)
    except Exception:
        log.exception("could not check the add-ons; none is offered")
        return {"loras": (), "reference": False, "upscaler": "", "describe": False}


def _set_result(future: concurrent.futures.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: concurrent.futures.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
