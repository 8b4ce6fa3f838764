"""The local engine: one worker thread owns the GPU; callers submit frozen requests and get futures.

Where a request goes:

1. :meth:`Engine.submit` (any thread) validates it and puts it in the :class:`FairQueue`.
2. The worker thread (``engine.worker_loop``) pops the next job, merges waiting drafts of the same
   shape into one batch, and runs the recipe (``engine.recipes``) on the GPU.
3. The images go to a small pool of encoder threads that write PNGs and complete the future,
   so the GPU thread moves on at once and the caller's event loop never waits.

The asyncio side awaits ``asyncio.wrap_future(handle.future)``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .api import EngineStopped, JobCancelled, QueueFull
from .device import offload_batch_limit, quiet_libraries, resolve_device, resolve_dtype, resolve_memory
from .queue import QueuedJob, lane_of
from .requests import DescribeRequest, DraftRequest, FinalRequest, Request, RequestError, UpscaleRequest
from .results import QueueInfo
from .settings import EngineSettings
from .worker_loop import ProgressFn, WorkerJob, WorkerLoop, set_exception

log = logging.getLogger(__name__)

NO_ADDONS: dict[str, Any] = {"loras": (), "reference": False, "upscaler": "", "describe": False}


@dataclass
class SubmittedJob:
    """One job queued on the worker thread: its id and the future of its JobResult.

    Not the door's ``engine.api.JobHandle``: ``LocalEngine`` wraps this in a ``LocalJobHandle``, which is one.
    """

    job_id: str
    future: concurrent.futures.Future  # -> JobResult


class Engine(WorkerLoop):
    """The image factory. Thread-safe; knows nothing of Discord."""

    def __init__(self, settings: EngineSettings):
        super().__init__(settings)
        self.device = "cpu"
        self.memory = "resident"
        self.addon_offer: dict[str, Any] = dict(NO_ADDONS)
        # Each waiting job's position and the estimates of the jobs up to it, for one run order: kept
        # until the order or the rates change, so a round of status lines (one question per waiting job)
        # costs one pass over the queue, not one per question.
        self._positions: tuple[tuple[Any, ...], dict[str, tuple[int, float]]] | None = None

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> Engine:
        """Pick the device and start the worker thread; models load there, not here."""

        from .models import ModelRegistry
        from .recipes import Recipes

        self.device = resolve_device(self.settings.device)
        dtype = resolve_dtype(self.settings.dtype, self.device)
        settings = self.settings
        self.memory = resolve_memory(settings.memory, self.device, settings.final_model, settings.fuse_qkv)
        if self.memory == "offload":  # bursts that would not fit beside a resident Turbo and its graphs
            limit = offload_batch_limit(self.device, self.settings.max_batch_images)
            if limit < self.settings.max_batch_images:
                log.info("offload mode: draft batches of up to %d images fit this card (ENGINE_MAX_BATCH)", limit)
                self.settings = self.settings.replace(max_batch_images=limit)
        self._registry = ModelRegistry(self.settings, self.device, dtype, self.memory)
        self._recipes = Recipes(self._registry, self.settings)
        self.addon_offer = _addon_offer(self._recipes.addons)
        self._rates.guess(on_gpu=self.device != "cpu")
        quiet_libraries()
        log.info("engine on %s (%s, memory %s, preset %s)", self.device, dtype, self.memory, self.settings.preset)
        self._spawn_worker()
        return self

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
                set_exception(job.future, EngineStopped("the engine stopped before this job ran"))
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
    ) -> SubmittedJob:
        """Queue ``request``; raises RequestError (bad request) or QueueFull at once."""
        if not isinstance(request, DraftRequest | FinalRequest | UpscaleRequest | DescribeRequest):
            raise RequestError(f"Unknown request type {type(request).__name__}.")
        request.validate()
        if self._recipes is None:
            raise RuntimeError("Engine.start() must be called before submit().")
        self._check_addons(request)
        job_id = job_id or uuid.uuid4().hex
        future: concurrent.futures.Future = concurrent.futures.Future()
        job = WorkerJob(job_id, str(user), request, future, on_progress)
        with self._lock:
            if self._stopping:
                raise QueueFull("The bot is shutting down; try again in a minute.")
            if job_id in self._jobs:
                raise RequestError(f"Job {job_id} is already queued.")
            if len(self._queue) >= self._queue.max_size:
                raise QueueFull(f"The queue is full ({self._queue.max_size} jobs); try again in a minute.")
            self._jobs[job_id] = job
            self._queue.push(QueuedJob(job_id, job.user, lane_of(request), request, payload=job))
            self._wake.notify()
        if self._thread is None or not self._thread.is_alive():
            self._restart_worker("worker thread was not running")
        return SubmittedJob(job_id, future)

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
            set_exception(job.future, JobCancelled("cancelled while waiting"))
        return True

    def queue_info(self, job_id: str) -> QueueInfo:
        """Where one job stands (``state`` "unknown" once it is done or was never here).

        The same numbers as :meth:`queue_snapshot`, from positions kept until the queue changes.
        """
        with self._lock:
            running = list(self._running)
            key = (self._queue.order_key(), id(self._recipes), tuple(self._rates.rate.items()))
            cached = self._positions
            order = self._queue.order() if cached is None or cached[0] != key else None
        if order is not None:
            positions: dict[str, tuple[int, float]] = {}
            ahead = 0.0
            for position, q in enumerate(order, start=1):
                ahead += self._rates.estimate(q.request, self._recipes)
                positions[q.job_id] = (position, ahead)
            cached = self._positions = (key, positions)
        assert cached is not None
        now = time.monotonic()
        left = {job.job_id: self._left(job, now) for job in running}
        if job_id in left:
            return QueueInfo(job_id, "running", 0, round(left[job_id], 1))
        if job_id in cached[1]:
            position, estimates = cached[1][job_id]
            return QueueInfo(job_id, "waiting", position, round(max(left.values(), default=0.0) + estimates, 1))
        return QueueInfo(job_id, "unknown", -1, 0.0)

    def _left(self, job: WorkerJob, now: float) -> float:
        """Seconds a running job has left, by the rates measured so far."""
        return max(0.0, self._rates.estimate(job.request, self._recipes) - (now - (job.started_at or now)))

    def queue_snapshot(self) -> list[QueueInfo]:
        """Running jobs (position 0), then waiting ones in the order they will run, with ETAs."""
        with self._lock:
            running = list(self._running)
            order = self._queue.order()
        now = time.monotonic()
        infos: list[QueueInfo] = []
        ahead = 0.0
        for job in running:
            left = self._left(job, now)
            infos.append(QueueInfo(job.job_id, "running", 0, round(left, 1)))
            ahead = max(ahead, left)  # a batch runs together: the longest one is what waiting jobs wait for
        for position, q in enumerate(order, start=1):
            ahead += self._rates.estimate(q.request, self._recipes)
            infos.append(QueueInfo(q.job_id, "waiting", position, round(ahead, 1)))
        return infos

    def health(self) -> dict[str, Any]:
        alive = self._thread is not None and self._thread.is_alive()
        registry = self._registry
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


def _addon_offer(addons) -> dict[str, Any]:
    """The add-on fields of the offer; an add-on whose check fails is simply not offered."""
    from .addons import offer_fields

    try:
        return offer_fields(addons)
    except Exception:
        log.exception("could not check the add-ons; none is offered")
        return dict(NO_ADDONS)
