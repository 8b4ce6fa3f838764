"""The buttons under a result: U1-U4 (final of a draft), V1-V4 (variations), 🔁 (reroll);
on finals, Vary (subtle) / Vary (strong) (image-to-image from the final, new seed) and Zoom out
1.5x / 2x and Pan ⬅ ➡ ⬆ ⬇ (outpainting): each makes a new final with its own buttons; where the
engine has an upscaler, Upscale (subtle) / Upscale (creative) enlarge a final 2x. Remix (drafts and
finals, not upscales) opens a form with the prompts to edit (``core.remix``).

Rows of a final: Vary, Upscale | Zoom out | Pan | 🔁, Remix (Discord allows 5 rows of 5 buttons).

Custom ids carry the job id (``job:<id>:u2``), and the handler rebuilds everything from the
database, so buttons keep working after a restart: the class is registered once with
``bot.add_dynamic_items`` (in ``cogs.imagine``) and no view state is kept in memory.
A click counts only on the message the job was posted in (its ``result_message_id``), as
reactions do: a custom id naming another job is refused.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import discord

from core.delivery import DEFAULT_UPLOAD_LIMIT, NO_MENTIONS, bounded
from core.history import JobRecord
from core.limits import Refusal
from core.origins import InteractionOrigin
from core.remix import RemixForm
from core.tiling import tiled_preview
from core.tree import report_error
from core.uploads import fit_to_limit

if TYPE_CHECKING:  # core.jobs builds these controls: a type-only import both ways
    from core.history import HistoryStore
    from core.jobs import JobService

log = logging.getLogger(__name__)

REROLL_EMOJI = "🔁"
OUTPAINT_BUTTONS: dict[str, tuple[str | None, str | None]] = {  # action -> (label, emoji)
    "zoom15": ("Zoom out 1.5x", None),
    "zoom2": ("Zoom out 2x", None),
    "pan_left": (None, "⬅️"),
    "pan_right": (None, "➡️"),
    "pan_up": (None, "⬆️"),
    "pan_down": (None, "⬇️"),
}
VARY_BUTTONS: dict[str, str] = {"vary_subtle": "Vary (subtle)", "vary_strong": "Vary (strong)"}
UPSCALE_BUTTONS: dict[str, str] = {"upscale_subtle": "Upscale (subtle)", "upscale_creative": "Upscale (creative)"}
REMIX = "remix"
ACTIONS = (
    "u1", "u2", "u3", "u4", "v1", "v2", "v3", "v4", "reroll", *OUTPAINT_BUTTONS, *VARY_BUTTONS, *UPSCALE_BUTTONS, REMIX,
)
FINAL_REROLL_ROW = 3
TILED_PREVIEW_LABEL = "Tiled preview"
PREVIEW_DOWNLOAD_TIMEOUT_S = 20.0
IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".jpeg")  # what a result posts (core.uploads fits big ones)


@runtime_checkable
class JobsClient(Protocol):
    """What components need of ``interaction.client``: the bot's history store and job service.

    ``bot.ImagineBot`` is one. ``core`` cannot import that class (it builds the job service, which
    builds these controls), so a component asks for this shape through :func:`jobs_client`.
    """

    store: HistoryStore
    jobs: JobService


def jobs_client(interaction: discord.Interaction) -> JobsClient:
    """The client ``interaction`` reached, as the bot with a store and a job service."""
    client = interaction.client
    if not isinstance(client, JobsClient):
        raise TypeError(f"{type(client).__name__} has no store and job service: components need bot.ImagineBot")
    return client


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.compile(
        r"job:(?P<job_id>[0-9]{1,19}):"
        r"(?P<action>u[1-4]|v[1-4]|reroll|zoom15|zoom2|pan_(?:left|right|up|down)|vary_(?:subtle|strong)"
        r"|upscale_(?:subtle|creative)|remix)"
    ),
):
    """One control of a job's message; the work happens in ``bot.jobs`` (core.jobs.JobService)."""

    def __init__(self, job_id: int, action: str, *, row: int | None = None) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown job action {action!r}")
        self.job_id = job_id
        self.action = action
        button: discord.ui.Button[Any]
        if action == "reroll":
            button = discord.ui.Button(
                emoji=REROLL_EMOJI, style=discord.ButtonStyle.secondary, custom_id=f"job:{job_id}:reroll", row=2
            )
        elif action == REMIX:
            button = discord.ui.Button(
                label="Remix", style=discord.ButtonStyle.secondary, custom_id=f"job:{job_id}:remix", row=2
            )
        elif action in VARY_BUTTONS or action in UPSCALE_BUTTONS:
            button = discord.ui.Button(
                label=VARY_BUTTONS.get(action) or UPSCALE_BUTTONS[action],
                style=discord.ButtonStyle.primary,
                custom_id=f"job:{job_id}:{action}",
                row=0,
            )
        elif action in OUTPAINT_BUTTONS:
            label, emoji = OUTPAINT_BUTTONS[action]
            button = discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"job:{job_id}:{action}",
                row=1 if action.startswith("zoom") else 2,
            )
        else:
            button = discord.ui.Button(
                label=action.upper(),
                style=discord.ButtonStyle.primary if action[0] == "u" else discord.ButtonStyle.secondary,
                custom_id=f"job:{job_id}:{action}",
                row=0 if action[0] == "u" else 1,
            )
        if row is not None:  # where the message's layout wants it (🔁 goes lower on finals)
            button.row = row
        super().__init__(button)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job_id"]), match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        origin = InteractionOrigin(interaction)
        try:
            jobs = jobs_client(interaction).jobs
            await self._check_message(interaction)
            if self.action == REMIX:
                await self._open_remix(interaction, origin)
            elif self.action == "reroll":
                await jobs.reroll(origin, self.job_id)
            elif self.action in VARY_BUTTONS:
                await jobs.vary(origin, self.job_id, self.action)
            elif self.action in UPSCALE_BUTTONS:
                await jobs.upscale2x(origin, self.job_id, self.action)
            elif self.action in OUTPAINT_BUTTONS:
                await jobs.outpaint(origin, self.job_id, self.action)
            elif self.action[0] == "u":
                await jobs.upscale(origin, self.job_id, int(self.action[1]) - 1)
            else:
                await jobs.variation(origin, self.job_id, int(self.action[1]) - 1)
        except Exception as e:
            interaction.extras.setdefault("job_id", self.job_id)
            await report_error(interaction, e)

    async def _open_remix(self, interaction: discord.Interaction, origin: InteractionOrigin) -> None:
        """Answer with the Remix form of this job (the answer is the form: no defer before it)."""
        job = await jobs_client(interaction).jobs.remix_source(origin, self.job_id)
        await bounded(interaction.response.send_modal(RemixForm(job)), origin.call_timeout, "the Remix form")

    async def _check_message(self, interaction: discord.Interaction) -> None:
        """Refuse a click whose message is not the result message of the job its custom id names."""
        if not 1 <= self.job_id < 2**63:
            return  # no such row can exist; the job service says "There is no job #N"
        job = await jobs_client(interaction).store.get_job(self.job_id)
        if job is None:
            return  # the job service says "There is no job #N"
        message = interaction.message
        if message is None or job.result_message_id != message.id:
            log.info(
                "button %s on message %s refused: job %s was posted as message %s",
                self.action,
                message.id if message is not None else None,
                job.id,
                job.result_message_id,
            )
            raise Refusal(
                f"This button is not on the result of job #{job.id}; use the buttons under that result."
            )


class TiledPreviewButton(
    discord.ui.DynamicItem[discord.ui.Button], template=re.compile(r"tile:(?P<job_id>[0-9]{1,19})")
):
    """The "Tiled preview" button under a ``--tile`` result: shows the clicker, privately, each image 2x2.

    On demand rather than a fifth attachment: the result keeps its usual files, and a 2x2 PNG of a
    1024 px final (four times the pixels) is uploaded only for whoever wants to check the seams.
    Made from the images of the message itself, so it works for drafts and finals, after a restart too.
    """

    def __init__(self, job_id: int, *, row: int | None = None) -> None:
        self.job_id = job_id
        super().__init__(
            discord.ui.Button(
                label=TILED_PREVIEW_LABEL, style=discord.ButtonStyle.secondary, custom_id=f"tile:{job_id}", row=row
            )
        )

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
        job = await jobs_client(interaction).store.get_job(self.job_id) if 1 <= self.job_id < 2**63 else None
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


def controls_for(job: JobRecord, *, upscaler: str = "") -> discord.ui.View:
    """The buttons for a finished job: drafts get U/V per image, 🔁 and Remix; finals get vary, zoom,
    pan, 🔁 and Remix, and the Upscale buttons where the engine has an ``upscaler`` (``engine.offer``).

    An upscaled final (``params.upscale``) is enlarged already: no Upscale or Remix buttons under it.
    A ``--tile`` job also gets "Tiled preview".
    """
    view = discord.ui.View(timeout=None)
    if job.kind == "draft":
        for i in range(1, min(job.count, 4) + 1):
            view.add_item(JobButton(job.id, f"u{i}"))
        for i in range(1, min(job.count, 4) + 1):
            view.add_item(JobButton(job.id, f"v{i}"))
        view.add_item(JobButton(job.id, "reroll"))
        view.add_item(JobButton(job.id, REMIX))
        if job.params.tile:
            view.add_item(TiledPreviewButton(job.id, row=2))
    else:
        upscaled = job.params.upscale is not None
        upscales = tuple(UPSCALE_BUTTONS) if upscaler and not upscaled else ()
        for action in (*VARY_BUTTONS, *upscales, *OUTPAINT_BUTTONS):
            view.add_item(JobButton(job.id, action))
        view.add_item(JobButton(job.id, "reroll", row=FINAL_REROLL_ROW))
        if not upscaled:
            view.add_item(JobButton(job.id, REMIX, row=FINAL_REROLL_ROW))
        if job.params.tile:
            view.add_item(TiledPreviewButton(job.id, row=FINAL_REROLL_ROW))
    # Nothing to listen for in this object: clicks reach JobButton through the dynamic item registry.
    view.stop()
    return view
