"""The in-process engine behind the door: today's worker thread (``engine.worker.Engine``) as an ImageEngine.

Nothing changes in how images are made (one worker thread owns the GPU, the fair two-lane
queue, batching of drafts, the out-of-memory retry); this class only turns the worker's
thread-side API into the door's async one:

- ``start()`` imports torch and starts the worker in a thread, so the event loop never waits for it.
- ``on_progress`` is called on the caller's event loop (hopped with ``call_soon_threadsafe``).
- ``JobHandle.result()`` awaits the worker's ``concurrent.futures.Future``.
- ``close()`` runs the worker's bounded shutdown in a thread.

:func:`fetch_missing_weights` downloads the weights the settings name; ``bot.py`` calls it before
connecting to Discord when this engine is chosen (a cluster fetches its own).

Importing this module does not import torch or ``engine.worker``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from .api import (
    FINAL_MODELS,
    EngineHealth,
    EngineOffer,
    EngineStopped,
    JobCancelled,
    JobResult,
    Progress,
    ProgressFn,
    QueueInfo,
    Request,
)
from .settings import EngineSettings

if TYPE_CHECKING:
    from .worker import Engine

log = logging.getLogger(__name__)


def offer_of(settings: EngineSettings) -> EngineOffer:
    """What an engine with ``settings`` offers the bot (the add-on fields are filled in by ``start()``)."""
    return EngineOffer(
        final_models=FINAL_MODELS,
        default_final_model=settings.final_model,
        draft_steps=settings.draft_steps,
        final_steps=settings.final_steps,
        upscale_strength=settings.upscale_strength,
        queue_max=settings.queue_max,
        preview_every=settings.preview_every,
        backend="local",
    )


class LocalJobHandle:
    """One job of the local engine: the worker's future, awaited on the caller's loop."""

    def __init__(self, job_id: str, future: concurrent.futures.Future, engine: LocalEngine) -> None:
        self._job_id = job_id
        self._future = future
        self._engine = engine

    @property
    def job_id(self) -> str:
        return self._job_id

    async def result(self) -> JobResult:
        """The images; raises JobCancelled, JobFailed or EngineStopped."""
        try:
            return await asyncio.wrap_future(self._future)
        except JobCancelled as e:
            # The worker stops a job that was running at shutdown as if cancelled; nobody asked for that.
            if self._engine.stopped_not_cancelled(self._job_id):
                raise EngineStopped("the engine stopped before this job finished") from e
            raise

    async def cancel(self) -> bool:
        return await self._engine.cancel(self._job_id)


class LocalEngine:
    """``engine.worker.Engine`` in this process, behind :class:`engine.api.ImageEngine`."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._offer = offer_of(settings)
        self._worker: Engine | None = None
        self._start_lock = threading.Lock()
        self._closing = False
        self._cancelled: set[str] = set()  # ids the caller cancelled (told apart from jobs stopped by close)

    @property
    def offer(self) -> EngineOffer:
        return self._offer

    @property
    def worker(self) -> Engine | None:
        """The worker engine once started (for the command line, benchmarks and tests)."""
        return self._worker

    async def start(self) -> None:
        """Pick the device and start the worker thread, off the loop; models load on the worker."""
        if self._worker is None:
            await asyncio.to_thread(self._start_worker)

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                from .worker import Engine  # imports torch on first use

                self._worker = Engine(self.settings).start()
                self._offer = replace(self._offer, **self._worker.addon_offer)

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait (off the loop) until the draft model is loaded or failed to; for tests and the command line."""
        worker = self._require()
        return await asyncio.to_thread(worker.wait_ready, timeout)

    def _require(self) -> Engine:
        if self._worker is None:
            raise RuntimeError("LocalEngine.start() must be awaited before it takes jobs.")
        return self._worker

    async def submit(
        self,
        request: Request,
        *,
        user: str,
        job_id: str,
        on_progress: ProgressFn | None = None,
    ) -> LocalJobHandle:
        """Queue ``request``; RequestError, QueueFull or EngineStopped at once (never waits for the GPU)."""
        if self._closing:
            raise EngineStopped("The image engine is shutting down; try again in a minute.")
        worker = self._require()
        hop = None
        if on_progress is not None:
            loop = asyncio.get_running_loop()

            def hop(progress: Progress) -> None:  # on the worker thread: hand it to the caller's loop
                try:
                    loop.call_soon_threadsafe(on_progress, progress)
                except RuntimeError:
                    pass  # the loop is closed: the bot is gone

        handle = worker.submit(request, user=str(user), job_id=job_id, on_progress=hop)
        return LocalJobHandle(handle.job_id, handle.future, self)

    async def queue_info(self, job_id: str) -> QueueInfo:
        if self._worker is None:
            return QueueInfo(job_id, "unknown", -1, 0.0)
        return self._worker.queue_info(job_id)

    async def queue_snapshot(self) -> list[QueueInfo]:
        return [] if self._worker is None else self._worker.queue_snapshot()

    async def cancel(self, job_id: str) -> bool:
        if self._worker is None or not self._worker.cancel(job_id):
            return False
        self._cancelled.add(job_id)
        return True

    def stopped_not_cancelled(self, job_id: str) -> bool:
        """Whether a job that ended as cancelled was stopped by :meth:`close` rather than by a caller."""
        if job_id in self._cancelled:
            self._cancelled.discard(job_id)
            return False
        return self._closing

    async def health(self) -> EngineHealth:
        if self._worker is None:
            return EngineHealth(ok=False, detail="not started", workers=0)
        info = self._worker.health()
        models = ", ".join(info["models"]) or "no models loaded yet"
        detail = f"{info['device']}, memory {info['memory']}: {models}; {info['waiting']} waiting"
        return EngineHealth(
            ok=bool(info["ok"]) and not self._closing,
            reachable=True,
            detail=detail,
            error=info["error"],
            workers=1 if info["worker_alive"] else 0,
            info=info,
        )

    async def close(self, timeout: float = 30.0) -> list[str]:
        """Stop taking work; the running job gets up to ``timeout`` s. Returns the ids that did not finish."""
        self._closing = True
        if self._worker is None:
            return []
        return await asyncio.to_thread(self._worker.shutdown, timeout)


def fetch_missing_weights(settings: EngineSettings) -> bool:
    """Download the models ``settings`` name, once, with progress bars; False (logged) when that failed.

    Called before the bot connects to Discord, so no Discord request waits for gigabytes.
    """
    from .weights import download, missing_models, needed_models

    missing = missing_models(settings, needed_models(settings))
    if not missing:
        return True
    log.info("fetching model weights once (fp16 safetensors, several GB): %s", ", ".join(missing))
    try:
        download(settings, missing)
    except Exception as e:  # no network, a gated model without a login, disk full...
        log.error(
            "could not download %s: %s. Fetch them with `.venv/bin/python -m engine download`, or point the "
            "model settings in .env at local folders (or set ENGINE_PRESET=tiny to try the bot without them).",
            ", ".join(missing),
            str(e).splitlines()[0] if str(e) else type(e).__name__,
        )
        return False
    return True
