"""Thin test doubles for the job service: an engine behind the door, an origin and a delivery.

:class:`FakeEngine` is a third implementation of ``engine.api.ImageEngine`` (beside LocalEngine and
the cluster engine): the same async methods and exceptions, and the contract suite
(``tests/engine/test_contract.py``) runs against it too. Jobs finish when the test says so, with
real PNG bytes. The origin and delivery subclass the real classes (``core.delivery``), so a
misspelled method fails the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import io
import itertools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord
from PIL import Image

from core.delivery import Delivery
from core.history import JobRecord
from core.origins import Origin
from engine.api import (
    DescribeRequest,
    EngineHealth,
    EngineOffer,
    EngineStopped,
    GeneratedImage,
    JobCancelled,
    JobFailed,
    JobResult,
    Progress,
    QueueFull,
    QueueInfo,
    RequestError,
    UpscaleRequest,
)


def png(width: int, height: int, color: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def result_size(request: Any) -> tuple[int, int]:
    """The size of a request's images: its own, or twice its image's for an upscale."""
    if isinstance(request, UpscaleRequest):
        with Image.open(io.BytesIO(request.image)) as source:
            return source.width * 2, source.height * 2
    return request.width, request.height


def planned_steps(request: Any, final_steps: int) -> int:
    """The steps a request runs: an upscale's redrawn tiles (none for "subtle"), else its steps."""
    if isinstance(request, UpscaleRequest):
        return final_steps if request.mode == "creative" else 0
    return request.steps if request.steps is not None else final_steps


@dataclass
class FakeHandle:
    """A JobHandle: the outcome is a thread-safe future the test completes."""

    job_id: str
    engine: FakeEngine = field(repr=False)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    async def result(self) -> JobResult:
        return await asyncio.wrap_future(self.future)

    async def cancel(self) -> bool:
        return await self.engine.cancel(self.job_id)


@dataclass
class Submitted:
    request: Any
    user: str
    job_id: str
    on_progress: Callable[[Progress], None] | None
    handle: FakeHandle
    row_status: str | None  # the job's row as the engine saw it at submit (None: no row)


FAKE_LORAS = ("tiny-ink", "tiny-glow", "watercolor-xl", "ink-wash")
FAKE_SUGGESTIONS = (
    "a small orange square on a plain background",
    "an orange tile, flat colour, studio light",
    "a warm abstract painting in a single colour",
    "close-up of an orange wall",
)


def addon_offer(**changes: Any) -> EngineOffer:
    """The fake engine's offer: the tiny preset's defaults with every add-on (LoRAs, reference, describe)."""
    values: dict[str, Any] = {
        "final_steps": 4, "backend": "fake", "loras": FAKE_LORAS, "reference": True, "describe": True,
        "upscaler": "Lanczos",
    }
    return EngineOffer(**{**values, **changes})


def plain_offer(**changes: Any) -> EngineOffer:
    """An offer without add-ons (no LoRAs, no reference, no describe)."""
    return EngineOffer(**{"final_steps": 4, "backend": "fake", **changes})


class FakeEngine:
    """An ImageEngine whose jobs finish on the test's word. Nothing runs on its own.

    ``offer`` is what it advertises (the tiny preset's defaults, with the add-ons of :func:`addon_offer`
    unless ``offer`` says otherwise; Lanczos as its upscaler, as the local engine's when no upscaler
    model is configured); ``queue_max`` is the limit it really enforces, so a test can make the two
    disagree. It refuses add-ons it does not offer as the worker does. ``reachable = False`` makes
    ``health()`` report a cluster the bot cannot reach (jobs are kept). A ``DescribeRequest``
    finishes with ``suggestions`` (:data:`FAKE_SUGGESTIONS` unless changed).
    """

    def __init__(self, db_path: str | None = None, *, queue_max: int = 200, offer: EngineOffer | None = None) -> None:
        self.db_path = db_path
        self.queue_max = queue_max
        self.offer = offer if offer is not None else addon_offer()
        self.offer = dataclasses.replace(self.offer, queue_max=queue_max)
        self.suggestions: tuple[str, ...] = FAKE_SUGGESTIONS
        self.submitted: list[Submitted] = []
        self.waiting: list[str] = []  # job ids in run order
        self.running: str | None = None
        self.cancelled: list[str] = []
        self.close_calls: list[float] = []
        self.refuse_with: Exception | None = None
        self.reachable = True
        self.started = False
        self.closed = False

    # ----------------------------------------------------------------- the door

    async def start(self) -> None:
        self.started = True

    async def submit(self, request, *, user: str, job_id: str, on_progress=None) -> FakeHandle:
        request.validate()
        if self.closed:
            raise EngineStopped("The image engine is shutting down; try again in a minute.")
        if self.refuse_with is not None:
            raise self.refuse_with
        self._check_addons(request)
        if len(self.waiting) >= self.queue_max:
            raise QueueFull(f"The queue is full ({len(self.waiting)} jobs).")
        if job_id in self.waiting or job_id == self.running:
            raise RequestError(f"Job {job_id} is already queued.")
        row_status = None
        if self.db_path is not None and job_id.isdigit():  # a describe job has no row
            # A second connection, as another process would: the row must be committed already.
            with sqlite3.connect(self.db_path) as conn:
                row = conn.execute("SELECT status FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
                row_status = row[0] if row else None
        handle = FakeHandle(job_id, self)
        self.submitted.append(Submitted(request, user, job_id, on_progress, handle, row_status))
        self.waiting.append(job_id)
        return handle

    def _check_addons(self, request) -> None:
        """Refuse what needs an add-on this engine does not offer, with the worker's words."""
        if isinstance(request, DescribeRequest):
            if not self.offer.describe:
                raise RequestError("Describe is not available on this bot.")
            return
        if isinstance(request, UpscaleRequest):
            if not self.offer.upscaler:
                raise RequestError("Upscaling is not available on this bot.")
            return
        if request.reference is not None and not self.offer.reference:
            raise RequestError("Image reference is not available on this bot.")
        for name, _ in request.loras:
            if name not in self.offer.loras:
                raise RequestError(f"Unknown LoRA {name!r}: pick one from the list.")

    async def cancel(self, job_id: str) -> bool:
        item = self._find(job_id)
        if item is None or item.handle.future.done():
            return False
        if job_id in self.waiting:
            self.waiting.remove(job_id)
        if self.running == job_id:
            self.running = None
        self.cancelled.append(job_id)
        item.handle.future.set_exception(JobCancelled(f"job {job_id} cancelled"))
        return True

    async def queue_info(self, job_id: str) -> QueueInfo:
        return self._info(job_id)

    async def queue_snapshot(self) -> list[QueueInfo]:
        ids = ([self.running] if self.running else []) + list(self.waiting)
        return [self._info(job_id) for job_id in ids]

    async def health(self) -> EngineHealth:
        if not self.reachable:
            return EngineHealth(ok=False, reachable=False, detail="fake cluster unreachable", workers=0)
        return EngineHealth(ok=not self.closed, detail="fake engine")

    async def close(self, timeout: float = 30.0) -> list[str]:
        self.close_calls.append(timeout)
        self.closed = True
        running = self._find(self.running) if self.running else None
        left = ([self.running] if running is not None and not running.handle.future.done() else []) + self.waiting
        for job_id in left:
            item = self._find(job_id)
            if item is not None and not item.handle.future.done():
                item.handle.future.set_exception(EngineStopped("the engine stopped before this job ran"))
        self.waiting.clear()
        self.running = None
        return left

    # ----------------------------------------------------------------- test controls

    def _info(self, job_id: str) -> QueueInfo:
        if self.running == job_id:
            return QueueInfo(job_id, "running", 0, 1.0)
        if job_id in self.waiting:
            position = self.waiting.index(job_id) + 1
            return QueueInfo(job_id, "waiting", position, 2.0 * position)
        return QueueInfo(job_id, "unknown", -1, 0.0)

    def _find(self, job_id: str) -> Submitted | None:
        for item in reversed(self.submitted):
            if item.job_id == job_id:
                return item
        return None

    def item(self, job_id: int | str) -> Submitted:
        found = self._find(str(job_id))
        assert found is not None, f"job {job_id} was not submitted"
        return found

    def run(self, job_id: int | str) -> None:
        """Move a job to running."""
        job_id = str(job_id)
        if job_id in self.waiting:
            self.waiting.remove(job_id)
        self.running = job_id

    def progress(self, job_id: int | str, step: int, total: int) -> None:
        """Report a step of a running final (the test runs on the loop, as the door promises)."""
        item = self.item(job_id)
        assert item.on_progress is not None
        item.on_progress(Progress(str(job_id), step, total))

    def finish(self, job_id: int | str) -> JobResult:
        item = self.item(job_id)
        job_id = str(job_id)
        if job_id in self.waiting:
            self.waiting.remove(job_id)
        if self.running == job_id:
            self.running = None
        request = item.request
        if isinstance(request, DescribeRequest):
            described = JobResult(
                images=(), model="describe", request=request, steps=0, guidance=0.0,
                timings={"queued": 0.1, "run": 0.2, "total": 0.3}, suggestions=self.suggestions[: request.count],
            )
            item.handle.future.set_result(described)
            return described
        width, height = result_size(request)
        images = tuple(
            GeneratedImage(png=png(width, height), seed=seed, width=width, height=height) for seed in request.seeds
        )
        steps = planned_steps(request, self.offer.final_steps)
        result = JobResult(
            images=images,
            model=request.model,
            request=request,
            steps=steps,
            guidance=0.0,
            timings={"queued": 0.1, "run": 0.2, "total": 0.3},
        )
        item.handle.future.set_result(result)
        return result

    def fail(self, job_id: int | str, message: str) -> None:
        job_id = str(job_id)
        if job_id in self.waiting:
            self.waiting.remove(job_id)
        if self.running == job_id:
            self.running = None
        self.item(job_id).handle.future.set_exception(JobFailed(message))


class RunningFakeEngine(FakeEngine):
    """A FakeEngine that works through its queue by itself, one job at a time, like the worker thread.

    A final reports each of its steps ``step_s`` apart (on the loop); ``paused`` holds the queue.
    Used where a test wants an engine that runs on its own: the contract suite, the loopback tests.
    """

    def __init__(
        self,
        db_path: str | None = None,
        *,
        queue_max: int = 200,
        step_s: float = 0.03,
        offer: EngineOffer | None = None,
    ) -> None:
        super().__init__(db_path, queue_max=queue_max, offer=offer)
        self.step_s = step_s
        self.paused = False
        self._task: asyncio.Task | None = asyncio.get_running_loop().create_task(self._work(), name="fake-engine")

    async def _work(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            if self.paused or not self.waiting:
                continue
            job_id = self.waiting[0]
            self.run(job_id)
            item = self.item(job_id)
            request = item.request
            if request.kind == "describe":
                total = 1
            else:
                total = planned_steps(request, self.offer.final_steps)
            for step in range(1, total + 1):
                await asyncio.sleep(self.step_s)
                if item.handle.future.done():  # cancelled or stopped while running
                    break
                if item.on_progress is not None:
                    self.progress(job_id, step, total)
            if not item.handle.future.done():
                self.finish(job_id)

    async def stop(self) -> None:
        """Stop working through the queue (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self, timeout: float = 30.0) -> list[str]:
        left = await super().close(timeout)
        await self.stop()
        return left


class RecordingDelivery(Delivery):
    """A Delivery whose Discord calls are recorded instead of sent."""

    _ids = itertools.count(9_000_000)

    def __init__(self, *, channel_id: int = 100, guild_id: int | None = 10, placeholder_id: int | None = None) -> None:
        super().__init__(None, channel_id=channel_id, guild_id=guild_id, placeholder_id=placeholder_id)  # type: ignore[arg-type]
        self.shown: list[str] = []
        self.posts: list[tuple[str, list[tuple[str, bytes]], discord.ui.View | None]] = []
        self.told: list[str] = []
        self.reactions: list[tuple[int, str]] = []
        self.post_error: Exception | None = None

    async def show(self, content: str) -> None:
        self.shown.append(content)

    async def post(
        self, content: str, files: Sequence[tuple[str, bytes]], view: discord.ui.View | None, *, nonce=None
    ):
        if self.post_error is not None:
            raise self.post_error
        self.posts.append((content, list(files), view))
        return discord.Object(id=next(self._ids))

    async def react(self, message_id: int, emoji: str) -> None:
        self.reactions.append((message_id, emoji))

    async def tell(self, text: str) -> bool:
        self.told.append(text)
        return True


class RecordingOrigin(Origin):
    """An origin that records refusals; acknowledging gives a RecordingDelivery."""

    _placeholders = itertools.count(5_000_000)

    def __init__(
        self,
        *,
        user_id: int = 1,
        guild_id: int | None = 10,
        channel_id: int = 100,
        age_restricted: bool = False,
        moderator: bool = False,
        source_message_id: int | None = None,
    ) -> None:
        self.user_id = user_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.age_restricted = age_restricted
        self.moderator = moderator
        self.source_message_id = source_message_id
        self.refusals: list[str] = []
        self.deliveries: list[RecordingDelivery] = []

    def moderates(self, job: JobRecord) -> bool:
        """``moderator=True``: a moderator who can see every channel (the scope rule is tested in tests/cogs)."""
        return self.moderator

    async def refuse(self, text: str) -> None:
        self.refusals.append(text)

    async def acknowledge(self, content: str) -> Delivery:
        delivery = RecordingDelivery(
            channel_id=self.channel_id, guild_id=self.guild_id, placeholder_id=next(self._placeholders)
        )
        delivery.shown.append(content)
        self.deliveries.append(delivery)
        return delivery


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until ``check()`` is truthy (polling the loop); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s: {check}")
        await asyncio.sleep(0.01)
