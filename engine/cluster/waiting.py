"""The cluster client's waiting room: the fair queue, retries first, and what the replicas have room for.

Jobs wait in ``engine.queue.FairQueue`` (round-robin between users, drafts first, finals never
starved). A job whose worker was lost goes back to the front of its lane. Only as many jobs leave
as the replicas can take at once (``capacity`` from the cluster's ``/health``: draft images, finals),
so Serve's own FIFO queues never reorder users.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field, replace

from ..api import ProgressFn
from ..queue import LANES, FairQueue, QueuedJob, lane_of
from ..requests import Request
from ..results import JobResult


@dataclass(eq=False)
class ClusterJob:
    """One job of the cluster client, waiting or in flight."""

    job_id: str
    user: str
    request: Request
    future: asyncio.Future
    on_progress: ProgressFn | None
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    attempts: int = 0  # starts that lost their worker
    task: asyncio.Task | None = None
    cancelled: bool = False

    @property
    def lane(self) -> str:
        return lane_of(self.request)

    @property
    def images(self) -> int:
        return self.request.count


class WaitingRoom:
    """Waiting jobs in run order; not thread-safe (the client's event loop owns it)."""

    def __init__(self, max_size: int, final_after_s: float):
        self.queue = FairQueue(max_size, final_after_s)
        self._front: dict[str, deque[ClusterJob]] = {lane: deque() for lane in LANES}  # retries go first
        self.capacity = {"draft_images": 0, "final": 0}
        # Each waiting job's position, lane and the wait of its lane's jobs up to it, for one order:
        # kept until the order, the rates or the capacity change (a status line asks once per round).
        self._positions: tuple[tuple, dict[str, tuple[int, str, float]]] | None = None

    @property
    def max_size(self) -> int:
        return self.queue.max_size

    def __len__(self) -> int:
        return len(self.queue) + sum(len(q) for q in self._front.values())

    def push(self, job: ClusterJob) -> None:
        self.queue.push(QueuedJob(job.job_id, job.user, job.lane, job.request, payload=job))

    def retry_first(self, job: ClusterJob) -> None:
        """``job`` again, first of its lane (its worker was lost)."""
        self._front[job.lane].appendleft(job)

    def order_key(self) -> tuple:
        """What :meth:`in_order` depends on: the same while this is (for positions kept between questions)."""
        return (self.queue.order_key(), tuple(job.job_id for lane in LANES for job in self._front[lane]))

    def in_order(self) -> list[ClusterJob]:
        front = [job for lane in LANES for job in self._front[lane]]
        return front + [q.payload for q in self.queue.order()]

    def remove(self, job: ClusterJob) -> bool:
        if job in self._front[job.lane]:
            self._front[job.lane].remove(job)
            return True
        return self.queue.remove(job.job_id) is not None

    def take_all(self) -> list[ClusterJob]:
        jobs = self.in_order()
        for job in jobs:
            self.remove(job)
        return jobs

    def free_lanes(self, running: list[ClusterJob]) -> tuple[str, ...]:
        draft_images = sum(j.images for j in running if j.lane == "draft")
        finals = sum(1 for j in running if j.lane == "final")
        free = []
        if draft_images < self.capacity["draft_images"]:
            free.append("draft")
        if finals < self.capacity["final"]:
            free.append("final")
        return tuple(free)

    def parallel(self) -> dict[str, float]:
        """How many jobs of each lane run at once (for ETAs)."""
        return {
            "draft": max(1.0, self.capacity["draft_images"] / 4),
            "final": max(1.0, float(self.capacity["final"])),
        }

    def next_job(self, running: list[ClusterJob]) -> ClusterJob | None:
        """The next job a free lane can start now, or None."""
        lanes = self.free_lanes(running)
        for lane in lanes:
            if self._front[lane]:
                return self._front[lane].popleft()
        queued = self.queue.pop(lanes) if lanes else None
        return queued.payload if queued is not None else None

    def positions(self, rate: dict[str, float]) -> dict[str, tuple[int, str, float]]:
        """job id -> (position from 1, lane, seconds its lane's waiting jobs up to it take), in run order.

        ``rate``: seconds a job of each lane takes in flight. One pass over the order, kept until the
        order, the rates or the capacity change: every waiting job's status line asks each round.
        """
        parallel = self.parallel()
        key = (self.order_key(), tuple(rate.items()), tuple(parallel.items()))
        if self._positions is None or self._positions[0] != key:
            positions: dict[str, tuple[int, str, float]] = {}
            waited = {lane: 0.0 for lane in LANES}
            for position, job in enumerate(self.in_order(), start=1):
                waited[job.lane] += rate[job.lane] / parallel[job.lane]
                positions[job.job_id] = (position, job.lane, waited[job.lane])
            self._positions = (key, positions)
        return self._positions[1]


def with_client_timings(result: JobResult, job: ClusterJob) -> JobResult:
    """Timings as the bot sees them: ``queued`` adds the wait here, ``total`` is since submit,
    ``cluster`` the time in flight and ``overhead`` what of it was not the replica's own work
    (HTTP, Serve's routing, JSON and base64)."""
    now = time.monotonic()
    timings = dict(result.timings)
    started = job.started_at or now
    on_replica = sum(timings.get(k, 0.0) for k in ("queued", "run", "encode"))
    timings["queued"] = round(timings.get("queued", 0.0) + (started - job.submitted_at), 4)
    timings["total"] = round(now - job.submitted_at, 4)
    timings["cluster"] = round(now - started, 4)
    timings["overhead"] = round(max(0.0, now - started - on_replica), 4)
    return replace(result, timings=timings)
