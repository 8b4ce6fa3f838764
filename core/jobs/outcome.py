"""What happens once a job has its result: the safety check, the post, the row, 🔁, W&B, the DM copy.

Touches Discord only through the job's :class:`~core.delivery.Delivery` (and ``client`` for the
channel's age restriction and DMs), writes the row's outcome (``set_result_message``,
``finish_job``), the final's image for zoom and pan, and the run log. Never runs an engine job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import discord

from core import render
from core.controls import REROLL_EMOJI, controls_for
from core.delivery import Delivery, DeliveryError
from core.direct import message_link
from core.history import HistoryStore, JobRecord
from core.jobs.guilds import GuildCache
from core.jobs.images import StoredImages
from core.origins import age_restricted
from core.pacing import ChannelPacer
from core.runlog import RunLog
from core.safety import SPOILER_PREFIX, ImageSafety, apply_policy
from engine.api import JobResult

log = logging.getLogger(__name__)

# (client, user id, text, files) -> whether it was sent: core.direct.send_direct, or a test's recorder
DirectMessage = Callable[[discord.Client, int, str, Sequence[tuple[str, bytes]]], Awaitable[bool]]


def result_nonce(job_id: int) -> str:
    """The nonce of a job's result message (at most 25 characters): Discord drops a repeated create."""
    return f"r{job_id}"


class Outcome:
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
        upscaler: Callable[[], str] = lambda: "",
    ) -> None:
        self.client = client
        self._upscaler = upscaler  # what the engine offers now for Upscale buttons ("" = none)
        self.safety = safety  # the image safety check (core.safety), loaded the first time a server uses it
        self._store = store
        self._guilds = guilds
        self._images = images
        self._run_log = run_log  # finals to Weights & Biases (WANDB_PROJECT)
        self._direct_message = direct_message  # DMs results to users who asked for that (/prefer dm)
        self._pacer = pacer

    async def deliver(self, job: JobRecord, result: JobResult, delivery: Delivery) -> None:
        """Post the result, then record it; what follows the post (🔁, W&B, DM) never fails the job."""
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
        started = time.monotonic()
        if self._pacer is not None:  # a bounded wait for the channel's turn: one 429 fewer per result
            await self._pacer.turn(delivery.channel_id)
        controls = controls_for(job, upscaler=self._upscaler())
        try:
            message = await delivery.post(content, files, controls, nonce=result_nonce(job.id))
        except DeliveryError as e:
            log.warning("job %s is done but its result was not posted: %s", job.id, e)
            await self._store.finish_job(job.id, seeds=seeds, timings=timings, steps=result.steps)
            await delivery.tell(f"Job #{job.id} is done, but I could not post it: {e}")
            return
        timings["deliver"] = round(time.monotonic() - started, 3)
        # What was posted is recorded first (one small write): should anything after this fail, a
        # restart edits this same message instead of posting the result a second time.
        await self._store.set_result_message(job.id, delivery.channel_id, message.id)
        if job.kind == "final" and result.images:  # the source of zoom out and pan
            await self._images.keep_result(job.id, result.images[0].png)
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
