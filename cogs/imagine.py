"""/imagine and /final, the buttons under results, and the same actions as reactions.

Reactions on one of our result messages: 🔁 rerolls, 1️⃣-4️⃣ make the final of that draft,
❌ cancels a job that is still waiting or deletes its message (its author or a moderator only).
Our own reactions, reactions by bots and reactions on any other message are ignored.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from cogs.options import ASPECT_CHOICES, MODEL_CHOICES, Prompt, Seed
from core.controls import REROLL_EMOJI, JobButton
from core.delivery import InteractionOrigin, MessageOrigin
from core.history import JobRecord
from core.limits import Refusal

log = logging.getLogger(__name__)

CANCEL_EMOJI = "❌"
NUMBER_EMOJI = {f"{n}\u20e3": n - 1 for n in range(1, 5)}  # 1️⃣-4️⃣ keycaps, without the variation selector


def _plain(emoji: str) -> str:
    """Emoji name without variation selectors: clients send keycaps both with and without U+FE0F."""
    return emoji.replace("\ufe0f", "")


class ImagineCog(commands.Cog):
    """Making images: drafts, finals, and what can be done with a result."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton)

    @app_commands.command(name="imagine", description="Four quick drafts of a prompt.")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw",
        negative_prompt="What to keep out of the image",
        aspect="Aspect ratio (default 1:1)",
        seed="Seed for repeatable drafts (0 to 4294967295)",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: Prompt,
        negative_prompt: Prompt | None = None,
        aspect: str | None = None,
        seed: Seed | None = None,
    ) -> None:
        await self.bot.jobs.imagine(  # type: ignore[attr-defined]
            InteractionOrigin(interaction), prompt=prompt, negative_prompt=negative_prompt, aspect=aspect, seed=seed
        )

    @app_commands.command(name="final", description="Straight to a 1024 px final.")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw",
        negative_prompt="What to keep out of the image",
        aspect="Aspect ratio (default 1:1)",
        seed="Seed for a repeatable image (0 to 4294967295)",
        model="ssd-1b (faster) or sdxl (base + refiner)",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, model=MODEL_CHOICES)
    async def final(
        self,
        interaction: discord.Interaction,
        prompt: Prompt,
        negative_prompt: Prompt | None = None,
        aspect: str | None = None,
        seed: Seed | None = None,
        model: str | None = None,
    ) -> None:
        await self.bot.jobs.final(  # type: ignore[attr-defined]
            InteractionOrigin(interaction),
            prompt=prompt,
            negative_prompt=negative_prompt,
            aspect=aspect,
            seed=seed,
            model=model,
        )

    # ----------------------------------------------------------------- reactions

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.guild_id is None or payload.emoji.id is not None or payload.emoji.name is None:
            return
        name = _plain(payload.emoji.name)
        if name not in (REROLL_EMOJI, CANCEL_EMOJI) and name not in NUMBER_EMOJI:
            return
        me = self.bot.user
        if me is None or payload.user_id == me.id:
            return
        if payload.message_author_id is not None and payload.message_author_id != me.id:
            return  # Discord says whose message it is: not ours
        if payload.member is not None and payload.member.bot:
            return
        job = await self.bot.store.job_by_message(payload.message_id)  # type: ignore[attr-defined]
        if job is None or job.result_message_id != payload.message_id or job.guild_id != payload.guild_id:
            return  # not one of our job messages

        channel = self.bot.get_channel(payload.channel_id)
        is_nsfw = getattr(channel, "is_nsfw", None)
        moderator = False
        if payload.member is not None and isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            moderator = channel.permissions_for(payload.member).manage_messages
        origin = MessageOrigin(
            self.bot,
            channel_id=payload.channel_id,
            guild_id=payload.guild_id,
            user_id=payload.user_id,
            source_message_id=payload.message_id,
            age_restricted=bool(is_nsfw()) if callable(is_nsfw) else False,
            moderator=moderator,
        )
        jobs = self.bot.jobs  # type: ignore[attr-defined]
        if name == CANCEL_EMOJI:
            await self._cancel_or_delete(payload, job, origin)
        elif name == REROLL_EMOJI:
            await jobs.reroll(origin, job.id)
        elif job.kind == "draft":
            await jobs.upscale(origin, job.id, NUMBER_EMOJI[name])

    async def _cancel_or_delete(
        self, payload: discord.RawReactionActionEvent, job: JobRecord, origin: MessageOrigin
    ) -> None:
        message = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id).get_partial_message(
            payload.message_id
        )
        if job.user_id != payload.user_id and not origin.moderator:
            log.info("❌ on job %s by user %s refused: not the author nor a moderator", job.id, payload.user_id)
            try:  # take the reaction back off, so the refusal is visible; needs Manage Messages
                await message.remove_reaction(payload.emoji, discord.Object(payload.user_id))
            except discord.HTTPException:
                pass
            return
        if not job.finished:
            try:
                await self.bot.jobs.cancel(  # type: ignore[attr-defined]
                    job.id, user_id=payload.user_id, moderator=origin.moderator, guild_id=payload.guild_id
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


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ImagineCog(bot))
