"""Admission: whether a planned job may join the queue, and the steps that make it a stored, running job.

The limits (the user's waiting jobs and jobs per minute, the engine's queue), then the images it
starts from, the row, Discord's acknowledgement, and :meth:`Runner.launch`. Per-user counts are kept
here, not in the database: the check and the reservation happen without an await between them, so a
burst of requests cannot slip past a limit together. Touches the store (``count_recent``, the new
row), the engine's queue snapshot and the origin's acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord

from core import render
from core.delivery import DeliveryError
from core.history import GuildSettings, HistoryStore, JobParams, JobRecord, NewJob
from core.jobs.images import StoredImages
from core.jobs.outcome import ResultPoster
from core.jobs.rows import Plan, Request
from core.jobs.runner import RESTARTING_STATE, Runner
from core.limits import Refusal, check_user_limits
from core.origins import Origin
from engine.api import ImageEngine, RequestError

log = logging.getLogger(__name__)

RECENT_WINDOW_S = 60.0


class Admission:
    """Lets planned jobs in (or refuses them) and hands the admitted ones to the runner."""

    _next_forget = 0.0  # when _forget_stale next sweeps (clock seconds)

    def __init__(
        self,
        *,
        store: HistoryStore,
        engine: ImageEngine,
        runner: Runner,
        outcome: ResultPoster,
        images: StoredImages,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._engine = engine
        self._runner = runner
        self._outcome = outcome
        self._images = images
        self._clock = clock
        self._reserved: Counter[int] = Counter()  # accepts between the limit check and the engine
        self._recent: defaultdict[int, deque[float]] = defaultdict(deque)  # accept times, last minute
        self._accepting = 0
        self._accepts_idle = asyncio.Event()
        self._accepts_idle.set()

    async def admit(self, origin: Origin, plan: Plan, guild: GuildSettings) -> JobRecord | None:
        """Limits, store the images the plan keeps, store the row, acknowledge, launch.

        The images are written to disk only once the user's limits let the job in. Raises Refusal
        before anything is acknowledged; None when Discord could not be answered.
        """
        if self._runner.closing:
            raise Refusal("I'm restarting; try again in a minute.")
        try:
            plan.request.validate()
        except RequestError as e:
            raise Refusal(str(e)) from e
        now = self._clock()
        await self._check_limits(origin, guild, now)
        # No await between the check and the reservation: concurrent requests of one user are counted exactly.
        self._reserved[origin.user_id] += 1
        self._recent[origin.user_id].append(now)
        self._accepting += 1
        self._accepts_idle.clear()
        try:
            params: JobParams = plan.fields["params"]
            # Images the row names from the job it repeats (🔁, U/V) stay, or it is refused: no prune between.
            with self._images.holding_named(params):
                if plan.keep:
                    self._images.check_kept()
                keys: dict[str, str] = {}
                try:
                    for name, png in plan.keep.items():
                        keys[name] = await self._images.keep(png, user_id=origin.user_id)
                except Refusal:
                    await self._images.drop(list(keys.values()))  # the first image was kept, a later one could not be
                    raise
                if keys:  # "init_image", "mask_image", "reference_image": the stored image's key
                    params = dataclasses.replace(
                        params,
                        init_image=keys.get("init_image", params.init_image),
                        mask_image=keys.get("mask_image", params.mask_image),
                        reference_image=keys.get("reference_image", params.reference_image),
                    )
                kept = list(keys.values())
                return await self._store_and_submit(origin, {**plan.fields, "params": params}, plan.request, kept)
        finally:
            self._reserved[origin.user_id] -= 1
            if not self._reserved[origin.user_id]:
                del self._reserved[origin.user_id]
            self._accepting -= 1
            if not self._accepting:
                self._accepts_idle.set()

    @contextlib.asynccontextmanager
    async def short_job(self, origin: Origin, guild: GuildSettings) -> AsyncIterator[None]:
        """A job without a row (/describe): the limits of :meth:`admit`, and it counts as the user's while inside.

        It counts among the user's waiting jobs until the block ends and among their jobs of the last
        minute. Raises Refusal when a limit says no.
        """
        if self._runner.closing:
            raise Refusal("I'm restarting; try again in a minute.")
        now = self._clock()
        await self._check_limits(origin, guild, now)
        self._reserved[origin.user_id] += 1
        self._recent[origin.user_id].append(now)
        try:
            yield
        finally:
            self._reserved[origin.user_id] -= 1
            if not self._reserved[origin.user_id]:
                del self._reserved[origin.user_id]

    async def precheck(self, origin: Origin, guild: GuildSettings) -> None:
        """Before an upload is downloaded and decoded: :meth:`admit`'s limits and the member's hourly upload
        budget, reserving nothing (admit checks again). A member over a limit costs no CPU. Raises Refusal."""
        if self._runner.closing:
            raise Refusal("I'm restarting; try again in a minute.")
        await self._check_limits(origin, guild, self._clock())
        self._images.budget.check(origin.user_id)

    async def _check_limits(self, origin: Origin, guild: GuildSettings, now: float) -> None:
        """The user's limits and the engine's queue; raises Refusal. Returns without an await after the check."""
        recent_stored = await self._store.count_recent(origin.user_id, now - RECENT_WINDOW_S)
        snapshot = await self._engine.queue_snapshot()
        waiting = sum(1 for info in snapshot if info.state == "waiting")
        mine = {str(job_id) for job_id, job in self._runner.active().items() if job.user_id == origin.user_id}
        positions = [info.position for info in snapshot if info.job_id in mine and info.state == "waiting"]
        check_user_limits(
            waiting=self._waiting_of(origin.user_id),
            recent=max(recent_stored, self._recent_of(origin.user_id, now)),
            max_waiting=guild.max_waiting_per_user,
            max_per_minute=guild.max_jobs_per_minute,
            next_position=min(positions, default=None),
        )
        if waiting >= self._engine.offer.queue_max:
            raise Refusal(f"The queue is full ({waiting} jobs waiting). Try again in a few minutes.")

    async def finish_accepting(self, grace: float) -> None:
        """Wait up to ``grace`` s for the requests being admitted right now to be stored (on shutdown)."""
        try:
            await asyncio.wait_for(self._accepts_idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("%d requests were still being accepted at shutdown", self._accepting)

    async def _store_and_submit(
        self, origin: Origin, fields: dict[str, Any], request: Request, kept: list[str]
    ) -> JobRecord | None:
        # The row comes first: a bot killed right after answering Discord finds the job on its next start
        # (and delivers it through the stored token or in the channel). Answering failed: the row says so.
        try:
            job = await self._store.create_job(NewJob(**fields, **origin.job_fields()))
        except Exception:
            await self._images.drop(kept)
            raise
        self._images.settle(kept)  # the row names them now
        # From here to the launch a /cancel finds the job in the runner (the row alone is not enough).
        self._runner.expect(job.id)
        try:
            return await self._acknowledge_and_launch(origin, job, request)
        finally:
            self._runner.unexpect(job.id)

    async def _acknowledge_and_launch(self, origin: Origin, job: JobRecord, request: Request) -> JobRecord | None:
        origin.note_job(job.id)
        try:
            delivery = await origin.acknowledge(f"{render.header_for(request.prompt, origin.user_id)}\n⏳ Queued.")
        except (DeliveryError, discord.HTTPException) as e:
            log.warning("job %s of user %s not acknowledged: %s", job.id, origin.user_id, e)
            await self._store.fail_job(job.id, "The request could not be acknowledged.")
            await self._images.release_job(job)
            return None
        if delivery.placeholder_id is not None:
            await self._store.set_result_message(job.id, origin.channel_id, delivery.placeholder_id)
            job = dataclasses.replace(
                job, result_channel_id=origin.channel_id, result_message_id=delivery.placeholder_id
            )
        log.info(
            "job %s accepted: %s %s by user %s in channel %s", job.id, job.kind, job.mode, job.user_id, job.channel_id
        )
        if self._runner.closing and not self._runner.cancelled_early(job.id):
            # Shutdown began while this was being stored: the row is queued and the next start runs it.
            await self._outcome.show(delivery, job, RESTARTING_STATE)
            return job
        await self._runner.launch(job, request, delivery)
        return job

    def _waiting_of(self, user_id: int) -> int:
        """Jobs of a user in the queue or running (or being posted), and being accepted right now."""
        return self._reserved[user_id] + sum(1 for job in self._runner.active().values() if job.user_id == user_id)

    def _recent_of(self, user_id: int, now: float) -> int:
        """Jobs ``user_id`` started in the last minute; called on every accept, it also forgets what is stale."""
        self._forget_stale(now)
        times = self._recent[user_id]
        while times and times[0] < now - RECENT_WINDOW_S:
            times.popleft()
        if not times:
            del self._recent[user_id]
            return 0
        return len(times)

    def _forget_stale(self, now: float) -> None:
        """Drop users whose last accept is older than the window (at most once a window): memory stays bounded."""
        if now < self._next_forget:
            return
        self._next_forget = now + RECENT_WINDOW_S
        for user_id in [u for u, times in self._recent.items() if not times or times[-1] < now - RECENT_WINDOW_S]:
            del self._recent[user_id]
