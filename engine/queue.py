"""The waiting room: two lanes (drafts, finals) with round-robin fairness between users.

Drafts are about twenty times cheaper than finals, so they go first; a final that has
waited longer than ``final_after_s`` goes before further drafts, so finals are never
starved. Within a lane users take turns: one user's twenty requests cannot push
everyone else back. Pure Python, no locking: the engine holds its lock around every call.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

LANES = ("draft", "final")


def lane_of(request: Any) -> str:
    """The lane of a request: drafts and describe in "draft", finals and upscales in "final"."""
    return getattr(request, "lane", request.kind)


@dataclass(eq=False)
class QueuedJob:
    job_id: str
    user: str
    lane: str  # "draft" | "final"
    request: Any
    enqueued_at: float = field(default_factory=time.monotonic)
    payload: Any = None  # the engine's own bookkeeping (future, callbacks)


class FairQueue:
    def __init__(self, max_size: int, final_after_s: float = 20.0, clock: Callable[[], float] = time.monotonic):
        self.max_size = max_size
        self.final_after_s = final_after_s
        self.clock = clock
        # lane -> user -> their jobs in order; the OrderedDict order is the users' turn order.
        self._lanes: dict[str, OrderedDict[str, deque[QueuedJob]]] = {lane: OrderedDict() for lane in LANES}
        self._size = 0
        self._version = 0  # changes with every push, pop and remove
        self._order: tuple[tuple[int, int], list[QueuedJob]] | None = None  # order() for (version, finals due)

    def __len__(self) -> int:
        return self._size

    def push(self, job: QueuedJob) -> None:
        lane = self._lanes[job.lane]
        lane.setdefault(job.user, deque()).append(job)
        self._size += 1
        self._version += 1

    def _next_lane(self, lanes: tuple[str, ...] = LANES) -> str | None:
        drafts = self._lanes["draft"] if "draft" in lanes else {}
        finals = self._lanes["final"] if "final" in lanes else {}
        if not finals:
            return "draft" if drafts else None
        if not drafts:
            return "final"
        oldest_final = min(q[0].enqueued_at for q in finals.values())
        return "final" if self.clock() - oldest_final >= self.final_after_s else "draft"

    def pop(self, lanes: tuple[str, ...] = LANES) -> QueuedJob | None:
        """The next job to run, or None when empty. The user served moves to the end of the turn.

        ``lanes`` limits the choice to lanes that can run now (the cluster engine: draft and final
        workers are separate, so a busy lane must not hold the other one back).
        """
        lane_name = self._next_lane(lanes)
        if lane_name is None:
            return None
        lane = self._lanes[lane_name]
        user, jobs = next(iter(lane.items()))
        job = jobs.popleft()
        del lane[user]
        if jobs:
            lane[user] = jobs  # back of the line
        self._size -= 1
        self._version += 1
        return job

    def take_matching(self, predicate: Callable[[QueuedJob], bool], limit: int) -> list[QueuedJob]:
        """Remove up to ``limit`` waiting drafts that ``predicate`` accepts, in fair order (for batching)."""
        taken: list[QueuedJob] = []
        for job in list(self._order_in_lane("draft")):
            if len(taken) >= limit:
                break
            if predicate(job):
                self.remove(job.job_id)
                taken.append(job)
        return taken

    def remove(self, job_id: str) -> QueuedJob | None:
        for lane in self._lanes.values():
            for user, jobs in list(lane.items()):
                for job in jobs:
                    if job.job_id == job_id:
                        jobs.remove(job)
                        if not jobs:
                            del lane[user]
                        self._size -= 1
                        self._version += 1
                        return job
        return None

    def _order_in_lane(self, lane_name: str) -> Iterator[QueuedJob]:
        """Jobs of one lane in the order round-robin would serve them."""
        queues = [deque(q) for q in self._lanes[lane_name].values()]
        while queues:
            nxt = []
            for q in queues:
                yield q.popleft()
                if q:
                    nxt.append(q)
            queues = nxt

    def order_key(self) -> tuple[int, int]:
        """What :meth:`order` depends on: it is the same while this is (for caches built from the order)."""
        now = self.clock()
        due = sum(1 for q in self._lanes["final"].values() for j in q if now - j.enqueued_at >= self.final_after_s)
        return (self._version, due)

    def order(self) -> list[QueuedJob]:
        """Every waiting job in the order it would run if nothing else arrived.

        Kept until the queue changes or another final passes ``final_after_s`` (the two things the order
        depends on): every waiting job's status asks for its position each round, and building the order
        once per question made a round of a full queue (200 jobs) cost 200 orders of 200 pops each.
        """
        key = self.order_key()
        if self._order is None or self._order[0] != key:
            clone = FairQueue(self.max_size, self.final_after_s, self.clock)
            for lane_name, lane in self._lanes.items():
                clone._lanes[lane_name] = OrderedDict((u, deque(q)) for u, q in lane.items())
            clone._size = self._size
            out = []
            while (job := clone.pop()) is not None:
                out.append(job)
            self._order = (key, out)
        return list(self._order[1])
