"""/imagine and /final, the buttons under results, and the same actions as reactions.

Reactions on one of our result messages: 🔁 rerolls, 1️⃣-4️⃣ make the final of that draft,
❌ cancels a job that is still waiting or deletes its message (its author or a moderator only).
Our own reactions, reactions by bots and reactions on any other message are ignored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.addon_options import ADDON_DESCRIPTIONS, REFERENCE_MODE_CHOICES, hide_unoffered, lora_autocomplete
from cogs.attachments import read_image, upload_turn
from cogs.options import (
    ASPECT_CHOICES,
    MODEL_CHOICES,
    LoraWeight,
    Percent,
    Prompt,
    ReferenceWeight,
    Seed,
    Strength,
    StylePick,
)
from cogs.reactions import plain_emoji, reacted_job
from cogs.ui.buttons import JobButton, TiledPreviewButton
from cogs.ui.remix import remix_submitted
from core.controls import REROLL_EMOJI
from core.history import JobRecord
from core.jobs.addons import Addons
from core.limits import Refusal
from core.origins import InteractionOrigin, MessageOrigin, age_restricted

if TYPE_CHECKING:
    from bot import ImagineBot
    from core.jobs import JobService

log = logging.getLogger(__name__)

CANCEL_EMOJI = "❌"
# Discord allows 100 characters; /help lists every parameter (core.prompt_text.help_text).
PROMPT_HELP = "What to draw; after it e.g. --ar 16:9 --seed 5 --no trees --tile, {red, blue} choices (see /help)"
NUMBER_EMOJI = {f"{n}\u20e3": n - 1 for n in range(1, 5)}  # 1️⃣-4️⃣ keycaps, without the variation selector


async def read_uploads(
    jobs: JobService, origin: InteractionOrigin, **attachments: tuple[discord.Attachment | None, str]
) -> dict[str, bytes | None]:
    """Each ``name=(attachment, what)`` downloaded and checked (None where not given), after answering Discord
    and after the member's limits (``cogs.attachments.upload_turn``). Raises Refusal."""
    read: dict[str, bytes | None] = dict.fromkeys(attachments)
    if all(attachment is None for attachment, _ in attachments.values()):
        return read
    await origin.defer()  # Discord first: the checks, downloads and decoding can take seconds
    async with upload_turn(jobs, origin):
        for name, (attachment, what) in attachments.items():
            if attachment is not None:
                read[name] = await read_image(attachment, what=what, jobs=jobs)
    return read


class ImagineCog(commands.Cog):
    """Making images: drafts, finals, and what can be done with a result."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot
        # Before the tree syncs: options of add-ons the engine lacks are not registered at all.
        for command in (self.imagine, self.final):
            hide_unoffered(command, bot.engine.offer)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton, TiledPreviewButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton, TiledPreviewButton)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A submitted Remix form (``cogs.ui.remix``: discord.py keeps no modal for it, so it comes here)."""
        await remix_submitted(interaction, self.bot.jobs)

    @app_commands.command(name="imagine", description="Four quick drafts of a prompt.")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt=PROMPT_HELP,
        negative_prompt="What to keep out of the image",
        aspect="Aspect ratio (default 1:1, or the image's own with an image)",
        seed="Seed for repeatable drafts (0 to 4294967295)",
        image="Start from this image (PNG, JPEG or WebP)",
        strength="With an image: how much may change, 0.25 (a little) to 1 (everything); default 0.6",
        style="A style of this server (its words are added to the prompt and the negative prompt)",
        **ADDON_DESCRIPTIONS,
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, reference_mode=REFERENCE_MODE_CHOICES)
    @app_commands.autocomplete(lora=lora_autocomplete, lora2=lora_autocomplete)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: Prompt,
        negative_prompt: Prompt | None = None,
        aspect: str | None = None,
        seed: Seed | None = None,
        image: discord.Attachment | None = None,
        strength: Strength | None = None,
        style: StylePick | None = None,
        lora: str | None = None,
        lora_weight: LoraWeight | None = None,
        lora2: str | None = None,
        lora2_weight: LoraWeight | None = None,
        reference: discord.Attachment | None = None,
        reference_weight: ReferenceWeight | None = None,
        reference_mode: str | None = None,
    ) -> None:
        origin = InteractionOrigin(interaction)
        try:
            if image is None and strength is not None:
                raise Refusal("Strength only matters with an image: attach one, or leave strength out.")
            read = await read_uploads(
                self.bot.jobs, origin, start=(image, "image"), borrowed=(reference, "reference image")
            )
            start, borrowed = read["start"], read["borrowed"]
        except Refusal as r:
            await origin.refuse(str(r))
            return
        await self.bot.jobs.imagine(
            origin,
            prompt=prompt,
            negative_prompt=negative_prompt,
            aspect=aspect,
            seed=seed,
            image=start,
            strength=strength,
            style=style,
            addons=Addons.from_options(
                lora=lora, lora_weight=lora_weight, lora2=lora2, lora2_weight=lora2_weight,
                reference=borrowed, reference_weight=reference_weight, reference_mode=reference_mode,
            ),
        )

    @app_commands.command(name="edit", description="Repaint part of an image (inpainting).")
    @app_commands.guild_only()
    @app_commands.describe(
        image="The image to edit (PNG, JPEG or WebP)",
        prompt="What to paint in the marked area",
        mask="Black and white image: white = repaint (or give a region instead)",
        left="Region instead of a mask: left edge, % of the width",
        top="Region: top edge, % of the height",
        width="Region: width, % of the image's width",
        height="Region: height, % of the image's height",
        negative_prompt="What to keep out of the image",
        strength="How much the marked area may change, 0 to 1 (default 0.9)",
        seed="Seed for a repeatable image (0 to 4294967295)",
        model="ssd-1b (faster) or sdxl",
    )
    @app_commands.choices(model=MODEL_CHOICES)
    async def edit(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: Prompt,
        mask: discord.Attachment | None = None,
        left: Percent | None = None,
        top: Percent | None = None,
        width: Percent | None = None,
        height: Percent | None = None,
        negative_prompt: Prompt | None = None,
        strength: Strength | None = None,
        seed: Seed | None = None,
        model: str | None = None,
    ) -> None:
        origin = InteractionOrigin(interaction)
        sides = (left, top, width, height)
        try:
            if mask is not None and any(v is not None for v in sides):
                raise Refusal("Give a mask or a region (left, top, width, height), not both.")
            region = None
            if mask is None:
                if left is None or top is None or width is None or height is None:
                    raise Refusal(
                        "Mark what to repaint: attach a mask (white = repaint), or give all four of "
                        "left, top, width and height (percent of the image)."
                    )
                region = (float(left), float(top), float(width), float(height))
            read = await read_uploads(self.bot.jobs, origin, picture=(image, "image"), painted=(mask, "mask"))
            picture, painted = read["picture"], read["painted"]
            assert picture is not None  # a required option
        except Refusal as r:
            await origin.refuse(str(r))
            return
        await self.bot.jobs.edit(
            origin,
            prompt=prompt,
            image=picture,
            mask=painted,
            region=region,
            negative_prompt=negative_prompt,
            strength=strength,
            seed=seed,
            model=model,
        )

    @app_commands.command(name="final", description="Straight to a 1024 px final.")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt=PROMPT_HELP,
        negative_prompt="What to keep out of the image",
        aspect="Aspect ratio (default 1:1)",
        seed="Seed for a repeatable image (0 to 4294967295)",
        model="ssd-1b (faster) or sdxl (base + refiner)",
        style="A style of this server (its words are added to the prompt and the negative prompt)",
        **ADDON_DESCRIPTIONS,
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, model=MODEL_CHOICES, reference_mode=REFERENCE_MODE_CHOICES)
    @app_commands.autocomplete(lora=lora_autocomplete, lora2=lora_autocomplete)
    async def final(
        self,
        interaction: discord.Interaction,
        prompt: Prompt,
        negative_prompt: Prompt | None = None,
        aspect: str | None = None,
        seed: Seed | None = None,
        model: str | None = None,
        style: StylePick | None = None,
        lora: str | None = None,
        lora_weight: LoraWeight | None = None,
        lora2: str | None = None,
        lora2_weight: LoraWeight | None = None,
        reference: discord.Attachment | None = None,
        reference_weight: ReferenceWeight | None = None,
        reference_mode: str | None = None,
    ) -> None:
        origin = InteractionOrigin(interaction)
        try:
            borrowed = (await read_uploads(self.bot.jobs, origin, borrowed=(reference, "reference image")))["borrowed"]
        except Refusal as r:
            await origin.refuse(str(r))
            return
        await self.bot.jobs.final(
            origin,
            prompt=prompt,
            negative_prompt=negative_prompt,
            aspect=aspect,
            seed=seed,
            model=model,
            style=style,
            addons=Addons.from_options(
                lora=lora, lora_weight=lora_weight, lora2=lora2, lora2_weight=lora2_weight,
                reference=borrowed, reference_weight=reference_weight, reference_mode=reference_mode,
            ),
        )

    # ----------------------------------------------------------------- reactions

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        name = plain_emoji(payload.emoji)
        if name not in (REROLL_EMOJI, CANCEL_EMOJI) and name not in NUMBER_EMOJI:
            return
        job = await reacted_job(self.bot, payload)
        if job is None:
            return

        origin = MessageOrigin(
            self.bot,
            channel_id=payload.channel_id,
            guild_id=payload.guild_id,
            user_id=payload.user_id,
            source_message_id=payload.message_id,
            age_restricted=age_restricted(self.bot.get_channel(payload.channel_id)),
            member=payload.member,
        )
        jobs = self.bot.jobs
        if name == CANCEL_EMOJI:
            await self._cancel_or_delete(payload, job, origin)
        elif name == REROLL_EMOJI:
            await jobs.reroll(origin, job.id)
        elif job.kind == "draft":
            await jobs.final_of_draft(origin, job.id, NUMBER_EMOJI[name])

    async def _cancel_or_delete(
        self, payload: discord.RawReactionActionEvent, job: JobRecord, origin: MessageOrigin
    ) -> None:
        message = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id).get_partial_message(
            payload.message_id
        )
        moderator = origin.moderates(job)
        if job.user_id != payload.user_id and not moderator:
            log.info("❌ on job %s by user %s refused: not the author nor a moderator", job.id, payload.user_id)
            try:  # take the reaction back off, so the refusal is visible; needs Manage Messages
                await message.remove_reaction(payload.emoji, discord.Object(payload.user_id))
            except discord.HTTPException:
                pass
            return
        if not job.finished:
            try:
                await self.bot.jobs.cancel(
                    job.id, user_id=payload.user_id, moderator=moderator, guild_id=payload.guild_id
                )
            except Refusal as r:
                await origin.refuse(str(r))
            return
        try:
            await message.delete()
            log.info("job %s message %s deleted by user %s", job.id, payload.message_id, payload.user_id)
        except discord.NotFound:
            pass
        except discord.Forbidden:
            await origin.refuse("I may not delete messages in this channel.")


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(ImagineCog(bot))
