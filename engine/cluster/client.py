"""The bot's side of the cluster engine: a fair queue here, GPU work on a Ray Serve cluster.

``ClusterEngine`` stands behind the same door as the local engine (``engine.api.ImageEngine``) and
needs neither torch nor Ray: it talks HTTP (``engine.cluster.transport``) to the cluster's ingress.

- Jobs wait in the waiting room (``engine.cluster.waiting``: the fair queue, retries first). Only as
  many jobs are in flight as the replicas can take at once (``capacity`` from the cluster's
  ``/health``), so Serve's own FIFO queues never reorder users; positions and ETAs come from this
  queue and the run times measured here.
- A running job is one ``POST /jobs`` whose answer streams frames of progress (handed to ``on_progress`` on
  this loop), then the result. Cancelling a running job closes that stream; the cluster then stops
  the pipeline at its next step.
- Faults: a replica that dies mid-job is retried once with the same job id, then only that job fails
  (JobFailed). While the cluster cannot be reached, jobs stay queued, ``health()`` says so (from the
  last check, no network call), and dispatch waits with backoff until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..api import (
    EngineHealth,
    EngineOffer,
    EngineStopped,
    JobCancelled,
    JobFailed,
    ProgressFn,
    QueueFull,
)
from ..queue import LANES
from ..requests import (
    DescribeRequest,
    DraftRequest,
    FinalRequest,
    Request,
    RequestError,
    UpscaleRequest,
)
from ..results import JobResult, QueueInfo
from . import wire
from .transport import UNREADABLE, ClusterDown, ClusterLink, WorkerLost, read_health
from .waiting import ClusterJob, WaitingRoom, with_client_timings

log = logging.getLogger(__name__)

RESTART_FIRST_S = 0.5  # a background loop that died starts again after this, doubling up to max_backoff_s
WORKER_LOST_TWICE = "The GPU worker making this image stopped twice; the job was given up. Please retry."


class ClusterJobHandle:
    """A job submitted to the cluster engine."""

    def __init__(self, engine: ClusterEngine, job: ClusterJob):
        self._engine = engine
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.job_id

    async def result(self) -> JobResult:
        return await asyncio.shield(self._job.future)

    async def cancel(self) -> bool:
        return await self._engine.cancel(self._job.job_id)


class ClusterEngine:
    """An ``ImageEngine`` whose GPUs are Ray Serve replicas reached at ``url`` (``python -m engine serve``)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        queue_max: int | None = None,
        final_after_s: float = 20.0,
        health_interval_s: float = 2.0,
        max_backoff_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 600.0,
    ):
        self._link = ClusterLink(url, token, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
        self.url = self._link.url
        self._queue_max_override = queue_max
        self._waiting = WaitingRoom(queue_max or EngineOffer().queue_max, final_after_s)
        self._jobs: dict[str, ClusterJob] = {}  # waiting and running
        self._running: dict[str, ClusterJob] = {}
        self._offer = EngineOffer(queue_max=self._waiting.max_size, backend="ray")
        self._replicas = {"draft": 0, "final": 0}
        self._reachable = False
        self._first_check = asyncio.Event()
        self._error: str | None = "not connected yet"
        self._health_interval = health_interval_s
        self._max_backoff = max_backoff_s
        # Seconds a job of each lane takes in flight, measured as jobs finish; start from a guess.
        self._rate = {"draft": 2.0, "final": 20.0}
        self._wake = asyncio.Event()
        self._check_now = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._closing = False

    # ---- life cycle --------------------------------------------------------------------------

    @property
    def offer(self) -> EngineOffer:
        return self._offer

    async def start(self, wait_s: float = 10.0) -> None:
        """Connect: check the cluster once (up to ``wait_s``), then keep checking in the background.

        An unreachable cluster is no error: jobs queue and run once it answers.
        """
        if self._link.open:
            return
        self._link.start()
        self._tasks = [
            asyncio.create_task(self._supervised("health checks", self._monitor), name="cluster-health"),
            asyncio.create_task(self._supervised("dispatch", self._dispatch), name="cluster-dispatch"),
        ]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._first_check.wait(), wait_s)
        if not self._reachable:
            log.warning("the engine cluster at %s is not reachable yet (%s); jobs will wait", self.url, self._error)

    async def close(self, timeout: float = 30.0) -> list[str]:
        """Stop taking work; running jobs get ``timeout`` s, then their streams are closed (the cluster
        stops them). Returns the ids of jobs that did not finish; their handles raise EngineStopped."""
        self._closing = True
        unfinished: list[str] = []
        for job in self._waiting.take_all():
            unfinished.append(job.job_id)
            self._jobs.pop(job.job_id, None)
            _fail(job.future, EngineStopped("the engine stopped before this job ran"))
        in_flight = list(self._running.values())
        tasks = [job.task for job in in_flight if job.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for job in in_flight:
            if job.future.done():
                continue
            unfinished.append(job.job_id)
            if job.task is not None:
                job.task.cancel()  # closes its stream: the cluster stops the job at its next step
            _fail(job.future, EngineStopped("the engine stopped while this job ran"))
        for task in [*self._tasks, *(j.task for j in self._running.values() if j.task is not None)]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._link.close()
        return unfinished

    # ---- the door (signatures as engine.api.ImageEngine states them, like LocalEngine's) -------

    async def submit(
        self,
        request: Request,
        *,
        user: str,
        job_id: str,
        on_progress: ProgressFn | None = None,
    ) -> ClusterJobHandle:
        if not isinstance(request, DraftRequest | FinalRequest | UpscaleRequest | DescribeRequest):
            raise RequestError(f"Unknown request type {type(request).__name__}.")
        request.validate()
        if isinstance(request, DescribeRequest) and not self._offer.describe:
            raise RequestError("Describe is not available on this bot.")
        if self._closing:
            raise EngineStopped("The engine is shutting down; try again in a minute.")
        if not self._link.open:
            raise RuntimeError("ClusterEngine.start() must be called before submit().")
        if job_id in self._jobs:
            raise RequestError(f"Job {job_id} is already queued.")
        if len(self._waiting) >= self._waiting.max_size:
            raise QueueFull(f"The queue is full ({self._waiting.max_size} jobs); try again in a minute.")
        job = ClusterJob(job_id, str(user), request, asyncio.get_running_loop().create_future(), on_progress)
        job.future.add_done_callback(_consume_exception)
        self._jobs[job_id] = job
        self._waiting.push(job)
        self._wake.set()
        return ClusterJobHandle(self, job)

    async def cancel(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if self._waiting.remove(job):
            self._jobs.pop(job_id, None)
            _fail(job.future, JobCancelled("cancelled while waiting"))
            return True
        job.cancelled = True
        if job.task is not None:
            job.task.cancel()  # closes the stream: the cluster stops the pipeline at its next step
        _fail(job.future, JobCancelled("cancelled while running"))
        return True

    async def queue_info(self, job_id: str) -> QueueInfo:
        """One job's line of :meth:`queue_snapshot`, from positions kept until the queue changes."""
        now = time.monotonic()
        for job in self._running.values():
            if job.job_id == job_id:
                return QueueInfo(job_id, "running", 0, round(self._left(job, now), 1))
        if (found := self._waiting.positions(self._rate).get(job_id)) is None:
            return QueueInfo(job_id, "unknown", -1, 0.0)
        position, lane, waited = found
        return QueueInfo(job_id, "waiting", position, round(self._ahead(now)[lane] + waited, 1))

    async def queue_snapshot(self) -> list[QueueInfo]:
        """Running jobs (position 0), then waiting ones in run order. ETAs count each lane's replicas:
        drafts and finals run on separate workers, so each lane waits only for its own jobs."""
        now = time.monotonic()
        infos = [QueueInfo(j.job_id, "running", 0, round(self._left(j, now), 1)) for j in self._running.values()]
        ahead = self._ahead(now)
        for job_id, (position, lane, waited) in self._waiting.positions(self._rate).items():  # in run order
            infos.append(QueueInfo(job_id, "waiting", position, round(ahead[lane] + waited, 1)))
        return infos

    def _left(self, job: ClusterJob, now: float) -> float:
        """Seconds a running job has left, by the rates measured so far."""
        return max(0.0, self._rate[job.lane] - (now - (job.started_at or now)))

    def _ahead(self, now: float) -> dict[str, float]:
        """Seconds until each lane's running jobs are done (what its first waiting job waits for)."""
        ahead = {lane: 0.0 for lane in LANES}
        for job in self._running.values():
            ahead[job.lane] = max(ahead[job.lane], self._left(job, now))
        return ahead

    async def health(self) -> EngineHealth:
        """From the last background check: no network call here."""
        info = {
            "url": self.url,
            "replicas": dict(self._replicas),
            "capacity": dict(self._waiting.capacity),
            "waiting": len(self._waiting),
            "running": list(self._running),
        }
        if not self._reachable:
            detail = f"the engine cluster is unreachable; {len(self._waiting)} job(s) are kept and will run"
            return EngineHealth(False, reachable=False, detail=detail, error=self._error, workers=0, info=info)
        workers = self._replicas["draft"] + self._replicas["final"]
        ok = self._error is None
        detail = f"{self._replicas['draft']} draft and {self._replicas['final']} final replica(s)"
        return EngineHealth(ok, reachable=True, detail=detail, error=self._error, workers=workers, info=info)

    # ---- dispatch and one job ------------------------------------------------------------------

    async def _supervised(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop for as long as the engine runs: should it die of anything but a
        cancel, say so in one log line and start it again after a short wait (no job is ever left
        waiting for a loop that is gone)."""
        delay = RESTART_FIRST_S
        while not self._closing:
            began = time.monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - began > 60.0:
                    delay = RESTART_FIRST_S  # it had been running a while: not a crash loop
                log.error("the cluster client's %s stopped (%r); restarting it in %.1f s", what, exc, delay)
                log.debug("what stopped the cluster client's %s", what, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(self._max_backoff, delay * 2)
                self._wake.set()

    async def _dispatch(self) -> None:
        """Start waiting jobs while the cluster is reachable and has room."""
        while True:
            self._wake.clear()
            while (
                self._reachable
                and not self._closing
                and (job := self._waiting.next_job(list(self._running.values()))) is not None
            ):
                job.started_at = time.monotonic()
                self._running[job.job_id] = job
                job.task = asyncio.create_task(self._run(job), name=f"cluster-job-{job.job_id}")
            await self._wake.wait()

    async def _run(self, job: ClusterJob) -> None:
        requeue = False
        try:
            result = await self._link.run(job.job_id, job.request, lambda line: self._progress(job, line))
            self._learn(job)
            result = with_client_timings(result, job)
            if not job.future.done():
                job.future.set_result(result)
        except asyncio.CancelledError:
            _fail(job.future, JobCancelled("cancelled while running"))
        except ClusterDown as exc:
            self._mark_unreachable(str(exc))
            requeue = True
        except (JobFailed, JobCancelled) as exc:
            _fail(job.future, exc)
        except WorkerLost as exc:
            job.attempts += 1
            if job.attempts <= 1 and not job.cancelled:
                log.warning("job %s lost its worker (%s); retrying it once", job.job_id, exc)
                requeue = True
            else:
                log.error("job %s lost its worker again (%s); failing it", job.job_id, exc)
                _fail(job.future, JobFailed(WORKER_LOST_TWICE))
        except Exception:  # a bug or a protocol mismatch: only this job fails
            log.exception("job %s failed in the cluster client", job.job_id)
            _fail(job.future, JobFailed(UNREADABLE))
        finally:
            self._running.pop(job.job_id, None)
            job.task = None
            if requeue and not job.cancelled and not self._closing and not job.future.done():
                job.started_at = None
                self._waiting.retry_first(job)  # same place: first of its lane
            elif not (requeue and self._closing):  # close() reports a requeued job as unfinished
                self._jobs.pop(job.job_id, None)
            self._wake.set()

    def _progress(self, job: ClusterJob, line: dict[str, Any]) -> None:
        if job.on_progress is None or job.cancelled:
            return
        try:
            job.on_progress(wire.decode_progress(job.job_id, line))
        except Exception:  # a broken listener must not break the job
            log.exception("progress callback of job %s failed", job.job_id)

    def _learn(self, job: ClusterJob) -> None:
        if job.started_at is not None:
            seconds = time.monotonic() - job.started_at
            self._rate[job.lane] = 0.7 * self._rate[job.lane] + 0.3 * seconds

    # ---- the cluster's health ------------------------------------------------------------------

    def _mark_unreachable(self, why: str) -> None:
        if self._reachable:
            log.warning("the engine cluster at %s became unreachable: %s", self.url, why)
        self._reachable = False
        self._error = why
        self._check_now.set()

    async def _monitor(self) -> None:
        """Check ``/health`` every ``health_interval_s``; while unreachable, back off up to ``max_backoff_s``."""
        backoff = 0.5
        while True:
            ok = await self._check()
            self._first_check.set()
            self._wake.set()
            delay = self._health_interval if ok else backoff
            backoff = 0.5 if ok else min(self._max_backoff, backoff * 2)
            self._check_now.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), delay)
            if self._check_now.is_set() and not ok:
                await asyncio.sleep(backoff)  # a failing job asked for a check: still wait a little

    async def _check(self) -> bool:
        try:
            status = await self._link.health()
        except ClusterDown as exc:
            self._mark_unreachable(str(exc))
            return False
        try:
            self._apply_status(status)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            # 200 with a body that is not this bot's /health (a proxy's page, another version): no
            # capacity to trust, so nothing is sent; checked again with backoff like an unreachable one.
            self._mark_unreachable(f"the cluster's /health answer cannot be read ({exc.__class__.__name__})")
            log.warning("the engine cluster's /health answer cannot be read: %r (%.200r)", exc, status)
            return False
        return True

    def _apply_status(self, status: Any) -> None:
        """Take a ``/health`` answer; raises on one that is not this bot's, having changed nothing."""
        self._replicas, self._waiting.capacity, self._offer = read_health(status, self._queue_max_override)
        self._waiting.queue.max_size = self._offer.queue_max
        if not self._reachable:
            log.info("the engine cluster at %s is reachable: %s", self.url, self._replicas)
        self._reachable = True
        self._error = None if status.get("ok") else "the cluster has no running draft or final replica"


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _consume_exception(future: asyncio.Future) -> None:
    """A job nobody awaits (cancelled, shut down) must not log 'exception was never retrieved'."""
    if not future.cancelled():
        future.exception()
