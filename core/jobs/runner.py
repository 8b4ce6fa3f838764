"""Running jobs: hand them to the engine, follow them to their end, cancel them, pick them up after a restart.

Touches the engine (submit, queue_info, health, cancel, close), the row's running state (``mark_running``,
``cancel_job``, ``fail_job``, ``requeue``) and the job's status message (through a
:class:`~core.status.StatusUpdater`); a result goes to :class:`~core.jobs.outcome.ResultPoster`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from core import render
from core.delivery import CallTimeout, Delivery, bounded
from core.history import HistoryStore, JobRecord
from core.jobs.images import StoredImages
from core.jobs.outcome import ResultPoster
from core.jobs.plans import DRAFT_COUNT
from core.jobs.rows import RebuildError, Request, rebuild_request
from core.pacing import ChannelPacer
from core.settings import BotSettings
from core.status import StatusUpdater
from engine.api import (
    EngineStopped,
    EngineUnavailable,
    ImageEngine,
    JobCancelled,
    JobFailed,
    JobHandle,
    JobResult,
    Progress,
    QueueFull,
    QueueInfo,
    RequestError,
)

log = logging.getLogger(__name__)

RESTART_CHECK_S = 10.0  # on start, how long to ask Discord whether a job's result is already posted
PREVIEW_NAME = "preview.png"  # the live preview a final's status message carries (not a result)
DELIVERY_GRACE_S = 15.0  # on shutdown, time for results that are done to be posted
CANCELLED_STATE = "✖️ Cancelled."
RESTARTING_STATE = "⏸ I'm restarting; this job continues when I'm back."
UNREACHABLE_STATE = "📡 The image engine is unreachable right now; your job is kept and will run when it is back."


class _Dropped(Exception):
    """The engine dropped the job without a result (it is shutting down)."""


@dataclass
class ActiveJob:
    """A job this process submitted to the engine and is waiting on."""

    job: JobRecord
    delivery: Delivery
    task: asyncio.Task | None = None


def position_worth_showing(last: int | None, now: int) -> bool:
    """Whether a waiting job's message should show its new queue position.

    Every move near the front; further back only moves of a fifth or more: a job 50th in line is
    edited about 15 times on its way to the front instead of 50 (Discord's rate limits are shared).
    """
    if last is None:
        return True
    return now != last and (now <= 5 or now <= last * 0.8)


class Runner:
    """The jobs this process follows, from ``launch`` to their end (or to the next start)."""

    def __init__(
        self,
        *,
        client: discord.Client,
        store: HistoryStore,
        engine: ImageEngine,
        settings: BotSettings,
        outcome: ResultPoster,
        pacer: ChannelPacer | None,
        clock: Callable[[], float],
        delivery_for_job: Callable[[discord.Client, JobRecord], Delivery],
        images: StoredImages,
    ) -> None:
        self.client = client
        self.settings = settings
        self.closing = False  # shutdown began: nothing new is launched, what is left stays queued
        self._store = store
        self._engine = engine
        self._outcome = outcome
        self._pacer = pacer
        self._clock = clock
        self._delivery_for_job = delivery_for_job
        self._active: dict[int, ActiveJob] = {}
        self._user_cancelled: set[int] = set()  # only ever jobs in _active: dropped when their task ends
        self._images = images  # restarts read a job's stored images; a refused or cancelled job's go
        # Jobs stored but not launched yet (being acknowledged, being submitted): id -> cancelled meanwhile.
        self._expected: dict[int, bool] = {}

    def active(self) -> dict[int, JobRecord]:
        """Jobs this process is waiting on (including those whose result is being posted), by id."""
        return {job_id: a.job for job_id, a in self._active.items()}

    def task_of(self, job_id: int) -> asyncio.Task | None:
        active = self._active.get(job_id)
        return active.task if active is not None else None

    def expect(self, job_id: int) -> None:
        """``job_id`` is stored and about to be launched: a /cancel from now on cancels it (:meth:`cancel`)."""
        self._expected.setdefault(job_id, False)

    def unexpect(self, job_id: int) -> None:
        """``job_id`` was launched (it is active now) or will not be: forget it."""
        self._expected.pop(job_id, None)

    def cancelled_early(self, job_id: int) -> bool:
        """Whether ``job_id`` was cancelled after its row was stored and before it reached the engine."""
        return self._expected.get(job_id, False)

    async def launch(self, job: JobRecord, request: Request, delivery: Delivery, *, restarted: bool = False) -> None:
        """Submit to the engine and follow the job in a task of its own (unless it was cancelled meanwhile)."""
        self.expect(job.id)
        try:
            await self._launch(job, request, delivery, restarted=restarted)
        finally:
            self.unexpect(job.id)

    async def _launch(self, job: JobRecord, request: Request, delivery: Delivery, *, restarted: bool) -> None:
        if self.cancelled_early(job.id):
            log.info("job %s cancelled before it reached the engine", job.id)
            await self._images.release_job(job)
            await self._outcome.show(delivery, job, CANCELLED_STATE)
            return
        updater = StatusUpdater(
            delivery.show,
            interval=self.settings.progress_interval,
            name=f"job-{job.id}-status",
            gate=functools.partial(self._status_gate, delivery.channel_id) if self._pacer else None,
            screen=await self._outcome.preview_screen(job, delivery.channel_id) if job.kind == "final" else None,
        )

        def on_progress(progress: Progress) -> None:  # the door calls it on this loop
            text = render.status_text(job, render.progress_state(progress.step, progress.total))
            updater.set(text, True, progress.preview)

        try:
            handle = await self._engine.submit(
                request,
                user=str(job.user_id),
                job_id=str(job.id),
                on_progress=on_progress if job.kind == "final" else None,
            )
        except (RequestError, QueueFull) as e:
            message = str(e) or "The queue is full. Try again in a few minutes."
            log.info("job %s refused by the engine: %s", job.id, message)
            await self._store.fail_job(job.id, message)
            await self._images.release_job(job)
            await updater.close()
            await self._outcome.show(delivery, job, f"⚠️ {message}")
            return
        except (EngineStopped, EngineUnavailable) as e:
            # Not taken, not failed: the row stays queued and the next start submits it again.
            log.warning("job %s not taken by the engine (%s); it stays queued for the next start", job.id, e)
            await updater.close()
            kept = RESTARTING_STATE if self.closing else f"⚠️ {e} Your job is kept and runs after my next restart."
            await self._outcome.show(delivery, job, kept)
            return

        info = await self._engine.queue_info(str(job.id))
        state = render.queued_state(info.position if info.state == "waiting" else None, info.eta_s)
        if restarted:
            state = f"{state} (picked up again after a restart)"
        updater.set(render.status_text(job, state))
        active = self._active[job.id] = ActiveJob(job, delivery)
        active.task = asyncio.create_task(self._follow(job, handle, delivery, updater), name=f"job-{job.id}")
        active.task.add_done_callback(lambda _task: self._ended(job.id))
        if self.cancelled_early(job.id):  # cancelled while it was being submitted: the engine lets it go now
            self._user_cancelled.add(job.id)
            await self._engine.cancel(str(job.id))

    def _ended(self, job_id: int) -> None:
        self._active.pop(job_id, None)
        self._user_cancelled.discard(job_id)

    async def cancel(self, job: JobRecord) -> str:
        """Cancel a waiting or running job (already checked as the caller's to cancel); returns what to say."""
        if job.id in self._expected:
            # Stored, not launched yet (being acknowledged or submitted): the launch sees the mark and stops it.
            self._expected[job.id] = True
            await self._store.cancel_job(job.id)
            return f"Cancelled job #{job.id}."
        if job.id not in self._active:
            # Stored but not in this process's engine (it could not be restarted): just mark it.
            await self._store.cancel_job(job.id)
            await self._images.release_job(job)
            return f"Cancelled job #{job.id}."
        self._user_cancelled.add(job.id)
        if not await self._engine.cancel(str(job.id)):
            self._user_cancelled.discard(job.id)
            return f"Job #{job.id} is finishing; it is too late to cancel it."
        return f"Cancelled job #{job.id}."

    def _status_gate(self, channel_id: int) -> float:
        """The channel pacer's answer for a status edit; crowded when two or more jobs here share the channel."""
        assert self._pacer is not None
        crowded = sum(1 for a in self._active.values() if a.delivery.channel_id == channel_id) > 1
        return self._pacer.status_gate(channel_id, crowded=crowded)

    async def _wait(self, job: JobRecord, handle: JobHandle, updater: StatusUpdater) -> JobResult:
        """The engine's result, showing the queue position while the job waits.

        While the engine cannot be reached (a cluster that is down) the message says so; the job is
        kept and its position shows again once the engine is back.
        """
        outcome = asyncio.ensure_future(handle.result())
        # If this task is cancelled (shutdown), an outcome that comes later must not be logged as lost.
        outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        last_position: int | None = None
        running = False
        unreachable = False
        try:
            while True:
                done, _ = await asyncio.wait({outcome}, timeout=self.settings.queue_update_interval)
                if done:
                    if outcome.cancelled():
                        raise _Dropped()
                    return outcome.result()
                health = await self._engine.health()
                if not health.reachable:
                    if not unreachable:
                        unreachable = True
                        log.warning("job %s waits for an unreachable engine: %s", job.id, health.detail)
                        updater.set(render.status_text(job, UNREACHABLE_STATE))
                    continue
                if unreachable:
                    unreachable, last_position = False, None
                    log.info("job %s: the engine is reachable again", job.id)
                info = await self._engine.queue_info(str(job.id))
                last_position, running = await self._show_place(job, info, updater, last_position, running)
        finally:
            outcome.cancel()

    async def _show_place(
        self, job: JobRecord, info: QueueInfo, updater: StatusUpdater, last_position: int | None, running: bool
    ) -> tuple[int | None, bool]:
        """Show a waiting job's queue position (when worth it) or that it started; returns the new state."""
        if info.state == "waiting" and position_worth_showing(last_position, info.position):
            last_position = info.position
            updater.set(render.status_text(job, render.queued_state(info.position, info.eta_s)))
        elif info.state == "running" and not running:
            running = True
            await self._store.mark_running(job.id)
            if not updater.progressed:  # progress may have come first; it says more
                updater.set(render.status_text(job, render.running_state(job)))
        return last_position, running

    async def _follow(self, job: JobRecord, handle: JobHandle, delivery: Delivery, updater: StatusUpdater) -> None:
        show = self._outcome.show
        try:
            result = await self._wait(job, handle, updater)
        except asyncio.CancelledError:
            await updater.close(timeout=2.0)
            raise
        except (JobCancelled, EngineStopped, _Dropped) as e:
            await updater.close()
            if job.id in self._user_cancelled or not (self.closing or isinstance(e, EngineStopped)):
                self._user_cancelled.discard(job.id)
                await self._store.cancel_job(job.id)
                await self._images.release_job(job)
                log.info("job %s cancelled", job.id)
                await show(delivery, job, CANCELLED_STATE)
            else:
                log.info("job %s stays queued for the next start", job.id)
                await show(delivery, job, RESTARTING_STATE)
            return
        except JobFailed as e:
            await updater.close()
            log.warning("job %s failed: %s", job.id, e)
            await self._store.fail_job(job.id, str(e))
            await show(delivery, job, f"⚠️ Failed: {e}")
            return
        except Exception as e:
            await updater.close()
            log.exception("job %s failed in an unexpected way", job.id)
            await self._store.fail_job(job.id, f"{type(e).__name__}: {e}")
            await show(delivery, job, f"⚠️ Something went wrong on my side (job #{job.id}); it is logged.")
            return
        await updater.close()
        self._user_cancelled.discard(job.id)
        try:
            await self._outcome.deliver(job, result, delivery)
        except Exception:
            # Logged here, never left in a dying task: the row keeps what was recorded so far and a
            # restart picks the job up again if its result was not recorded as posted.
            log.exception("job %s: delivery did not complete", job.id)

    async def restart(self) -> int:
        """Submit again the jobs that were waiting or running when the bot stopped; returns how many."""
        count = 0
        for job in await self._store.unfinished_jobs():
            if job.status == "running":
                await self._store.requeue(job.id)
            try:
                request = (await rebuild_request(self._store, job, self._images.inputs)).validate()
            except (RebuildError, RequestError) as e:
                log.warning("job %s cannot be restarted: %s", job.id, e)
                await self._store.fail_job(job.id, f"Could not be restarted: {e}")
                await self._images.release_job(job)
                continue
            if (posted_id := await already_posted(self.client, job, self._clock())) is not None:
                # Killed after posting but before the row said done: the result is there; do not post it twice.
                log.info("job %s: its result is already in message %s; marked done", job.id, posted_id)
                await self._store.finish_job(
                    job.id,
                    seeds=request.seeds,
                    timings={},
                    result_channel_id=job.result_channel_id or job.channel_id,
                    result_message_id=posted_id,
                )
                continue
            await self.launch(job, request, self._delivery_for_job(self.client, job), restarted=True)
            count += 1
        if count:
            log.info("picked up %d unfinished job%s from the last run", count, "s" if count != 1 else "")
        return count

    async def shutdown(self, timeout: float) -> None:
        """Let the engine finish its running job for up to ``timeout`` s, post what is done, stop following the rest.

        Jobs still waiting stay queued in the database and are picked up by the next start.
        """
        try:
            left = set(await self._engine.close(timeout))
        except Exception:
            log.exception("the engine did not shut down cleanly")
            left = set()
        finishing = [a.task for job_id, a in self._active.items() if a.task is not None and str(job_id) not in left]
        if finishing:
            await asyncio.wait(finishing, timeout=DELIVERY_GRACE_S)
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job_id in sorted(left):
            # The engine gave a running job up past the timeout: it runs from the start next time, so its
            # row says queued now (a kill instead leaves it running, and restart() requeues it then).
            if not job_id.isdigit():  # no row of its own (a /describe)
                continue
            job = await self._store.get_job(int(job_id))
            if job is not None and job.status == "running":
                await self._store.requeue(job.id)
        if left:
            log.info(
                "%d job%s left for the next start: %s",
                len(left),
                "s" if len(left) != 1 else "",
                ", ".join(sorted(left)),
            )


async def already_posted(client: discord.Client | None, job: JobRecord, now: float) -> int | None:
    """The id of ``job``'s message if it already carries its result files (asked of Discord, bounded)."""
    if client is None:
        return None
    token_alive = (
        job.interaction_token is not None
        and job.interaction_expires_at is not None
        and now < job.interaction_expires_at - 30
        and client.application_id is not None
    )
    looked_up: Awaitable[discord.Message]
    try:
        if job.result_message_id is None:
            if not token_alive:
                return None
            # Killed before the interaction's message id was recorded: ask for it by its token.
            assert client.application_id is not None and job.interaction_token is not None
            webhook = discord.Webhook.partial(client.application_id, job.interaction_token, client=client)
            looked_up = webhook.fetch_message("@original")  # type: ignore[arg-type]
        else:
            channel = client.get_partial_messageable(job.result_channel_id or job.channel_id, guild_id=job.guild_id)
            looked_up = channel.fetch_message(job.result_message_id)
        message = await bounded(looked_up, RESTART_CHECK_S, "the restart check")  # never cancels: the token's lock
    except (discord.HTTPException, CallTimeout) as e:
        log.info("job %s: could not look at message %s (%s); running it again", job.id, job.result_message_id, e)
        return None
    wanted = DRAFT_COUNT if job.kind == "draft" else 1
    posted = sum(a.filename != PREVIEW_NAME for a in message.attachments) >= min(wanted, job.count)
    return message.id if posted else None
