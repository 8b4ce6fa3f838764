"""What a click on one of the bot's buttons does: ``DynamicItem`` templates, registered by the cogs.

The handler rebuilds everything from the custom id (:mod:`cogs.ui.layout` writes them) and the
database, and no view state is kept in memory, so buttons keep working after a restart: the classes
are registered once with ``bot.add_dynamic_items`` (:class:`JobButton` and :class:`TiledPreviewButton`
in ``cogs.imagine``, :class:`SuggestionButton` in ``cogs.describe``). A job's button counts only on
the message the job was posted in (its ``result_message_id``), as reactions do: a custom id naming
another job is refused. The work itself happens in ``bot.jobs`` (``core.jobs.JobService``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from typing import Any

import discord

from cogs.ui import layout
from cogs.ui.client import bot_of, require_result_message
from cogs.ui.remix import RemixForm
from core.delivery import DEFAULT_UPLOAD_LIMIT, NO_MENTIONS, bounded
from core.limits import Refusal
from core.origins import InteractionOrigin
from core.suggestions import suggestion_from
from core.tiling import tiled_preview
from core.tree import report_error
from core.uploads import fit_to_limit

log = logging.getLogger(__name__)

PREVIEW_DOWNLOAD_TIMEOUT_S = 20.0
IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")  # what a result posts (core.uploads fits big ones)


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=layout.JOB_TEMPLATE):
    """One control of a job's message (``job:<id>:<action>``)."""

    def __init__(self, job_id: int, action: str, *, row: int | None = None) -> None:
        self.job_id = job_id
        self.action = action
        super().__init__(layout.job_button(job_id, action, row=row))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job_id"]), match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        origin = InteractionOrigin(interaction)
        try:
            jobs = bot_of(interaction).jobs
            await self._check_message(interaction)
            if self.action == layout.REMIX:
                await self._open_remix(interaction, origin)
            elif self.action == layout.REROLL:
                await jobs.reroll(origin, self.job_id)
            elif self.action in layout.VARY_BUTTONS:
                await jobs.vary(origin, self.job_id, self.action)
            elif self.action in layout.UPSCALE_BUTTONS:
                await jobs.upscale_2x(origin, self.job_id, self.action)
            elif self.action in layout.OUTPAINT_BUTTONS:
                await jobs.outpaint(origin, self.job_id, self.action)
            elif self.action in layout.FINALS:
                await jobs.final_of_draft(origin, self.job_id, layout.FINALS.index(self.action))
            else:
                await jobs.variation(origin, self.job_id, layout.VARIATIONS.index(self.action))
        except Exception as e:
            interaction.extras.setdefault("job_id", self.job_id)
            await report_error(interaction, e)

    async def _open_remix(self, interaction: discord.Interaction, origin: InteractionOrigin) -> None:
        """Answer with the Remix form of this job (the answer is the form: no defer before it)."""
        job = await bot_of(interaction).jobs.remix_source(origin, self.job_id)
        await bounded(interaction.response.send_modal(RemixForm(job)), origin.call_timeout, "the Remix form")

    async def _check_message(self, interaction: discord.Interaction) -> None:
        """Refuse a click whose message is not the result message of the job its custom id names."""
        await require_result_message(
            interaction,
            self.job_id,
            f"This button is not on the result of job #{self.job_id}; use the buttons under that result.",
        )


class TiledPreviewButton(discord.ui.DynamicItem[discord.ui.Button], template=layout.TILE_TEMPLATE):
    """The "Tiled preview" button under a ``--tile`` result: shows the clicker, privately, each image 2x2.

    On demand rather than a fifth attachment: the result keeps its usual files, and a 2x2 PNG of a
    1024 px final (four times the pixels) is uploaded only for whoever wants to check the seams.
    Made from the images of the message itself, so it works for drafts and finals, after a restart too.
    """

    def __init__(self, job_id: int, *, row: int | None = None) -> None:
        self.job_id = job_id
        super().__init__(layout.tile_button(job_id, row=row))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> TiledPreviewButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._preview(interaction)
        except Exception as e:
            interaction.extras.setdefault("job_id", self.job_id)
            await report_error(interaction, e)

    async def _preview(self, interaction: discord.Interaction) -> None:
        job = await bot_of(interaction).store.get_job(self.job_id) if 1 <= self.job_id < 2**63 else None
        message = interaction.message
        if job is None or message is None or job.result_message_id != message.id:
            raise Refusal(f"This button is not on the result of job #{self.job_id}.")
        images = [a for a in message.attachments if a.filename.lower().endswith(IMAGE_SUFFIXES)]
        if not images:
            raise Refusal(f"The result of job #{job.id} has no images left to preview.")
        await bounded(interaction.response.defer(ephemeral=True, thinking=True), 10.0, "the acknowledgement")
        try:
            sources = await asyncio.wait_for(asyncio.gather(*(a.read() for a in images)), PREVIEW_DOWNLOAD_TIMEOUT_S)
        except (discord.HTTPException, asyncio.TimeoutError):
            raise Refusal("I could not download the images of this result; try again.") from None
        limit = getattr(interaction, "filesize_limit", None) or DEFAULT_UPLOAD_LIMIT
        share = limit // len(sources)  # Discord's limit is per file, but keep the whole answer small

        def mosaics() -> list[tuple[bytes, str]]:
            return [fit_to_limit(tiled_preview(data), share) for data in sources]

        made = await asyncio.to_thread(mosaics)
        files = [
            discord.File(
                io.BytesIO(data),
                filename=f"tiled_preview{'' if len(made) == 1 else f'_{i + 1}'}.{ext}",
                spoiler=source.is_spoiler(),
            )
            for i, ((data, ext), source) in enumerate(zip(made, images, strict=True))
        ]
        await bounded(
            interaction.followup.send(
                f"Job #{job.id} tiled 2x2: a seam would show as a line through the middle.",
                files=files,
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            ),
            30.0,
            "the tiled preview",
        )


class SuggestionButton(discord.ui.DynamicItem[discord.ui.Button], template=layout.SUGGESTION_TEMPLATE):
    """Runs /imagine with suggestion ``number`` of the message it is on (``describe:<n>``).

    The suggestion is read back from the text of the message (``core.suggestions``): nothing is kept
    in memory or in the database. The bot's own messages cannot be edited by anyone else.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        super().__init__(layout.suggestion_button(number))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SuggestionButton:
        return cls(int(match["number"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            message = interaction.message
            prompt = suggestion_from(message.content, self.number) if message is not None else None
            if prompt is None:
                raise Refusal(f"Suggestion {self.number} is not on this message any more.")
            await bot_of(interaction).jobs.imagine(InteractionOrigin(interaction), prompt=prompt)
        except Exception as e:
            await report_error(interaction, e)
