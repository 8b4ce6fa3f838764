"""What happens once a job has its result: the safety check, the post, the row, 🔁, W&B, the DM copy.

Touches Discord only through the job's :class:`~core.delivery.Delivery` (and ``client`` for the
channel's age restriction and DMs), writes the row's outcome (``set_result_message``,
``finish_job``), the final's image for zoom and pan, and the run log. Never runs an engine job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import discord

from core import render
from core.controls import REROLL_EMOJI, Controls
from core.delivery import Delivery, DeliveryError
from core.direct import message_link
from core.history import HistoryStore, JobRecord
from core.jobs.guilds import GuildCache
from core.jobs.images import StoredImages
from core.origins import Origin, age_restricted
from core.pacing import ChannelPacer
from core.runlog import RunLog
from core.safety import SPOILER_PREFIX, ImageSafety, apply_policy, preview_passes
from engine.api import JobResult

log = logging.getLogger(__name__)

# (client, user id, text, files) -> whether it was sent: core.direct.send_direct, or a test's recorder
DirectMessage = Callable[[discord.Client, int, str, Sequence[tuple[str, bytes]]], Awaitable[bool]]


def result_nonce(job_id: int) -> str:
    """The nonce of a job's result message (at most 25 characters): Discord drops a repeated create."""
    return f"r{job_id}"


class ResultPoster:
    """Posts results and records them; shows the other endings (failed, cancelled, kept) in the job's message."""

    def __init__(
        self,
        *,
        client: discord.Client,
        store: HistoryStore,
        guilds: GuildCache,
        images: StoredImages,
        run_log: RunLog,
        direct_message: DirectMessage,
        pacer: ChannelPacer | None,
        safety: ImageSafety,
        controls: Controls,
        upscaler: Callable[[], str] = lambda: "",
    ) -> None:
        self.client = client
        self._controls = controls  # the buttons under a result (cogs.ui.layout.Layout, handed in by bot.py)
        self._upscaler = upscaler  # what the engine offers now for Upscale buttons ("" = none)
        self.safety = safety  # the image safety check (core.safety), loaded the first time a server uses it
        self._store = store
        self._guilds = guilds
        self._images = images
        self._run_log = run_log  # finals to Weights & Biases (WANDB_PROJECT)
        self._direct_message = direct_message  # DMs results to users who asked for that (/prefer dm)
        self._pacer = pacer
        self._late_records: set[asyncio.Future[None]] = set()  # posts that landed after their bound, being recorded

    async def deliver(self, job: JobRecord, result: JobResult, delivery: Delivery) -> None:
        """Post the result, then record it; what follows the post (🔁, W&B, DM) never fails the job."""
        made = time.monotonic()  # results wait for their channel's turn in the order they were made
        seeds = [image.seed for image in result.images]
        timings = dict(result.timings)
        if job.kind == "draft":
            files = [(f"draft_{i + 1}.png", image.png) for i, image in enumerate(result.images)]
        else:
            files = [("final.png", image.png) for image in result.images[:1]]
        content = render.result_text(job, steps=result.steps if job.kind == "final" else None)
        files, note = await self._safety_checked(job, files, delivery.channel_id)
        if note:
            content = f"{content}\n{note}"[: render.MESSAGE_LIMIT]
        if job.kind == "final" and result.images:  # the source of zoom out and pan, and of /show if the post fails
            await self._images.keep_result(job.id, result.images[0].png)
        started = time.monotonic()
        if self._pacer is not None:  # a bounded wait for the channel's turn: one 429 fewer per result
            await self._pacer.turn(delivery.channel_id, made=made)
        controls = self._controls.for_result(job, upscaler=self._upscaler())
        try:
            message = await delivery.post(content, files, controls, nonce=result_nonce(job.id))
        except DeliveryError as e:
            await self._not_posted(job, delivery, e, seeds=seeds, timings=timings, steps=result.steps)
            return
        timings["deliver"] = round(time.monotonic() - started, 3)
        # What was posted is recorded first (one small write): should anything after this fail, a
        # restart edits this same message instead of posting the result a second time.
        await self._store.set_result_message(job.id, delivery.channel_id, message.id)
        await self._store.finish_job(
            job.id,
            seeds=seeds,
            timings=timings,
            result_channel_id=delivery.channel_id,
            result_message_id=message.id,
            steps=result.steps,
        )
        log.info("job %s delivered as message %s", job.id, message.id)
        await self._images.prune_if_due()
        await delivery.react(message.id, REROLL_EMOJI)
        if job.kind == "final" and result.images:
            await self._run_log.log_final(job, result.images[0].png, steps=result.steps, seconds=timings.get("total"))
        link = message_link(job.guild_id, delivery.channel_id, message.id)
        await self._direct_copy(job, files, steps=result.steps if job.kind == "final" else None, link=link)

    async def _not_posted(
        self,
        job: JobRecord,
        delivery: Delivery,
        error: DeliveryError,
        *,
        seeds: list[int],
        timings: dict[str, float],
        steps: int,
    ) -> None:
        """Done, but posted nowhere: the row says so (no result message) and the user learns how to get it."""
        log.warning("job %s is done but its result was not posted: %s", job.id, error)
        await self._store.finish_unposted(job.id, seeds=seeds, timings=timings, steps=steps)
        self._record_if_landed(job.id, delivery.channel_id, error)  # after the row says unposted, never before
        how = (
            f"Use `/show {job.id}` where I can post to get it"
            + (" (its image is kept)." if job.kind == "final" else " (made again with the same seeds).")
        )
        text = f"Job #{job.id} is done, but I could not post it: {error} {how}"[: render.MESSAGE_LIMIT]
        if await delivery.tell(text):
            return
        try:  # no live interaction to tell it through: a DM, whatever the /prefer dm setting
            sent = await self._direct_message(self.client, job.user_id, text, ())
        except Exception:
            log.exception("job %s: could not tell its author that it was not posted", job.id)
            return
        if not sent:
            log.info("job %s: its author could not be told that it was not posted (closed DMs)", job.id)

    def _record_if_landed(self, job_id: int, channel_id: int, error: DeliveryError) -> None:
        """A channel post whose answer came past its bound, but came, is recorded: ``/show`` then posts no copy."""

        def landed(post: asyncio.Future[discord.Message]) -> None:
            if not post.cancelled() and post.exception() is None:
                log.info("job %s: its result landed late, as message %s; recorded", job_id, post.result().id)
                record = asyncio.ensure_future(self._store.set_result_message(job_id, channel_id, post.result().id))
                self._late_records.add(record)
                record.add_done_callback(recorded)

        def recorded(record: asyncio.Future[None]) -> None:
            self._late_records.discard(record)
            if not record.cancelled() and (failure := record.exception()) is not None:
                log.warning("job %s: its late result could not be recorded: %r", job_id, failure)

        for post in error.late_posts:
            post.add_done_callback(landed)

    async def post_kept(self, origin: Origin, job: JobRecord) -> bool:
        """Post a final that is done but was never posted (its delivery failed) from its kept image: no new run.

        Returns False (nothing done) for any other job, or when its image is no longer stored; the
        message posted becomes the job's result message, so its buttons work as on any result.
        """
        if job.kind != "final" or job.status != "done" or job.result_message_id is not None:
            return False
        png = await self._images.result(job.id)
        if png is None:
            return False
        try:
            delivery = await origin.acknowledge(render.status_text(job, "📤 Posting the kept image…"))
        except (DeliveryError, discord.HTTPException) as e:
            log.warning("job %s: /show of its kept image not acknowledged: %s", job.id, e)
            return True
        content = render.result_text(job, steps=job.steps)
        files, note = await self._safety_checked(job, [("final.png", png)], delivery.channel_id)
        if note:
            content = f"{content}\n{note}"[: render.MESSAGE_LIMIT]
        try:
            message = await delivery.post(content, files, self._controls.for_result(job), nonce=f"s{job.id}")
        except DeliveryError as e:
            log.warning("job %s: its kept image was not posted either: %s", job.id, e)
            self._record_if_landed(job.id, delivery.channel_id, e)
            await delivery.tell(f"I could not post job #{job.id} here either: {e}")
            return True
        await self._store.set_result_message(job.id, delivery.channel_id, message.id)
        log.info("job %s: its kept image was posted as message %s", job.id, message.id)
        await delivery.react(message.id, REROLL_EMOJI)
        return True

    async def show(self, delivery: Delivery, job: JobRecord, state: str) -> None:
        """Show a state of ``job`` in its message; internal detail (an engine's error text) never reaches it."""
        state = render.public_state(state, job.id)
        try:
            await delivery.show(render.status_text(job, state))
        except discord.HTTPException as e:
            log.info("job %s: could not show %r: %s", job.id, state, e)
            await delivery.tell(f"Job #{job.id}: {state}")

    async def _safety_checked(
        self, job: JobRecord, files: list[tuple[str, bytes]], channel_id: int
    ) -> tuple[list[tuple[str, bytes]], str | None]:
        """The files that may be posted under the server's image safety check, and a line saying what it did.

        Age-restricted channels and servers with the check off get every file. When the detector
        cannot run, every image counts as flagged: the server asked not to see unchecked ones.
        """
        if job.guild_id is None or not files or self._age_restricted(channel_id):
            return files, None
        mode = (await self._guilds.get(job.guild_id)).image_safety
        if mode == "off":
            return files, None
        try:
            kept, flagged = await apply_policy(self.safety, mode, files, job_id=job.id)
        except Exception:
            log.exception("job %s: the image safety check failed; treating every image as flagged", job.id)
            flagged = len(files)
            kept = [(SPOILER_PREFIX + name, data) for name, data in files] if mode == "spoiler" else []
        if not flagged:
            return kept, None
        images = f"{flagged} of {len(files)} images" if len(files) > 1 else "The image"
        if mode == "spoiler":
            done = "posted as spoilers" if len(files) > 1 else "posted as a spoiler"
        else:
            done = "held back"
        return kept, f"🛡️ {images} {done} by this server's image safety check."

    async def preview_screen(self, job: JobRecord, channel_id: int) -> Callable[[bytes], Awaitable[bool]] | None:
        """What a final's live previews must pass to be shown (the server's image safety check), or None.

        The same policy as for results: age-restricted channels and servers with the check off are
        not checked. In either mode a flagged preview is left out (a status edit cannot spoiler).
        """
        if job.guild_id is None or self._age_restricted(channel_id):
            return None
        if (await self._guilds.get(job.guild_id)).image_safety == "off":
            return None
        return functools.partial(preview_passes, self.safety, job_id=job.id)

    def _age_restricted(self, channel_id: int) -> bool:
        return age_restricted(self.client.get_channel(channel_id) if self.client is not None else None)

    async def _direct_copy(
        self, job: JobRecord, files: Sequence[tuple[str, bytes]], *, steps: int | None, link: str
    ) -> None:
        """DM the result to its author when they asked for that (/prefer dm:true). Never raises."""
        try:
            if not (await self._store.user_prefs(job.user_id)).dm_results:
                return
            text = render.direct_text(job, steps=steps, link=link)
            sent = await self._direct_message(self.client, job.user_id, text, files)
        except Exception:
            log.exception("job %s: the DM copy failed", job.id)
            return
        if sent:
            log.info("job %s: a copy went to user %s by DM", job.id, job.user_id)
