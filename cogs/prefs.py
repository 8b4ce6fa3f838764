"""/prefer (a member's defaults), ⭐ (favourites) and ✉️ (a copy by DM) on results.

The defaults fill what a member leaves empty on a new prompt (``core.jobs.JobService``):
the style suffix is appended to the prompt of /imagine, /final, /edit and image-channel
messages; the negative prompt is used when none is given there; the aspect when none is given
to /imagine or /final without an image; the final model for /final, /edit and U1-U4 (1️⃣-4️⃣).
Buttons that remake a stored job (V, 🔁, zoom, pan, /show) repeat its stored values, which are
the effective ones, so rerolls and history reproduce them.

Reactions on one of our result messages: ⭐ by the job's author marks it a favourite and
removing the ⭐ unmarks it (anyone else's ⭐ is just a reaction); ✉️ DMs the reactor the
result's images with their parameters. Closed DMs are ignored quietly (logged at info).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.options import ASPECT_CHOICES, MODEL_CHOICES, Prompt, StyleSuffix
from cogs.reactions import plain_emoji, reacted_job
from core import render
from core.delivery import NO_MENTIONS
from core.direct import message_link, send_direct
from core.echo import quoted
from core.history import JobRecord, UserPrefs
from core.limits import DEFAULT_ASPECT, Refusal
from core.throttle import UserThrottle

if TYPE_CHECKING:
    from bot import ImagineBot

log = logging.getLogger(__name__)

STAR_EMOJI = "⭐"
ENVELOPE_EMOJI = "✉"  # ✉️ without its variation selector (clients send both)
DM_COOLDOWN_S = 30.0  # one ✉️ copy per member and message in this time (removing and adding again)
DM_COPIES_PER_MINUTE = 5  # ✉️ copies one member can have, over all messages
ATTACHMENT_READ_TIMEOUT_S = 30.0
RESET_CHOICES = [
    app_commands.Choice(name="everything", value="all"),
    app_commands.Choice(name="aspect", value="aspect"),
    app_commands.Choice(name="negative prompt", value="negative_prompt"),
    app_commands.Choice(name="style suffix", value="style"),
    app_commands.Choice(name="final model", value="model"),
    app_commands.Choice(name="results by DM", value="dm"),
]
RESET_FIELDS = {
    "aspect": ("aspect",),
    "negative_prompt": ("negative_prompt",),
    "style": ("style_suffix",),
    "model": ("final_model",),
    "dm": ("dm_results",),
    "all": ("aspect", "negative_prompt", "style_suffix", "final_model", "dm_results"),
}


def prefs_text(prefs: UserPrefs, *, default_model: str, title: str = "Your defaults") -> str:
    """What /prefer shows: each default, and what applies when it is not set."""
    negative = render.shown(prefs.negative_prompt, 300) if prefs.negative_prompt else "none"
    style = f"“, {render.shown(prefs.style_suffix, 300)}”" if prefs.style_suffix else "none"
    lines = [
        f"**{title}** (used where you leave an option empty):",
        f"• Aspect: {prefs.aspect or f'{DEFAULT_ASPECT} (bot default)'}",
        f"• Negative prompt: {negative}",
        f"• Style suffix: {style}",
        f"• Final model: {prefs.final_model or f'{default_model} (bot default)'}",
        f"• Results by DM: {'on' if prefs.dm_results else 'off'}",
    ]
    return "\n".join(lines)[: render.MESSAGE_LIMIT]


class PrefsCog(commands.Cog):
    """What is a member's own: their defaults, their favourites, copies of results by DM."""

    prefer = app_commands.Group(name="prefer", description="Your defaults for new images.", guild_only=True)

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot
        self._dm_sent: dict[tuple[int, int], float] = {}  # (user, message) -> when ✉️ last sent a copy
        self._dm_copies = UserThrottle(DM_COPIES_PER_MINUTE, 60.0)  # ✉️ on many results at once

    # ----------------------------------------------------------------- /prefer

    def _default_model(self) -> str:
        return self.bot.engine.offer.default_final_model

    @prefer.command(name="set", description="Set some of your defaults (the others stay as they are).")
    @app_commands.describe(
        aspect="Aspect ratio when you give none (without a start image)",
        negative_prompt="Negative prompt when you give none",
        style="Appended to every new prompt, e.g. watercolor -> “a fox, watercolor”",
        model="Final model when you choose none (/final, /edit, U1-U4)",
        dm="Also send me every finished result by DM",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, model=MODEL_CHOICES)
    async def prefer_set(
        self,
        interaction: discord.Interaction,
        aspect: str | None = None,
        negative_prompt: Prompt | None = None,
        style: StyleSuffix | None = None,
        model: str | None = None,
        dm: bool | None = None,
    ) -> None:
        changes = {
            name: value
            for name, value in (
                ("aspect", aspect),
                ("negative_prompt", negative_prompt),
                ("style_suffix", style),
                ("final_model", model),
                ("dm_results", dm),
            )
            if value is not None
        }
        if not changes:
            raise Refusal("Give at least one default to set; /prefer show lists them, /prefer reset clears them.")
        prefs = await self.bot.jobs.prefs.update(interaction.user.id, **changes)
        log.info("user %s set defaults: %s", interaction.user.id, ", ".join(sorted(changes)))
        text = prefs_text(prefs, default_model=self._default_model(), title="Saved. Your defaults")
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @prefer.command(name="show", description="Your defaults for new images.")
    async def prefer_show(self, interaction: discord.Interaction) -> None:
        prefs = await self.bot.jobs.prefs.get(interaction.user.id)
        text = prefs_text(prefs, default_model=self._default_model())
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @prefer.command(name="reset", description="Back to the bot's defaults (all, or one of them).")
    @app_commands.describe(what="Which default to reset (default: everything)")
    @app_commands.choices(what=RESET_CHOICES)
    async def prefer_reset(self, interaction: discord.Interaction, what: str | None = None) -> None:
        fields = RESET_FIELDS.get(what or "all")
        if fields is None:
            raise Refusal(f"Unknown default {quoted(what, 20)}: choose one from the list.")
        prefs = await self.bot.jobs.prefs.update(interaction.user.id, **dict.fromkeys(fields))
        text = prefs_text(prefs, default_model=self._default_model(), title="Reset. Your defaults")
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    # ----------------------------------------------------------------- ⭐ and ✉️

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        name = plain_emoji(payload.emoji)
        if name not in (STAR_EMOJI, ENVELOPE_EMOJI):
            return
        job = await reacted_job(self.bot, payload)
        if job is None:
            return
        if name == STAR_EMOJI:
            await self._mark(job, payload.user_id, True)
        else:
            await self._send_copy(job, payload)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        if plain_emoji(payload.emoji) != STAR_EMOJI:
            return
        job = await reacted_job(self.bot, payload)
        if job is not None:
            await self._mark(job, payload.user_id, False)

    async def _mark(self, job: JobRecord, user_id: int, favorite: bool) -> None:
        if job.user_id != user_id:
            return  # a ⭐ on someone else's job is an ordinary reaction
        await self.bot.store.set_favorite(job.id, favorite)
        log.info("job %s %s favourite of user %s", job.id, "is a" if favorite else "is no longer a", user_id)

    async def _send_copy(self, job: JobRecord, payload: discord.RawReactionActionEvent) -> None:
        key = (payload.user_id, payload.message_id)
        now = time.monotonic()
        if now - self._dm_sent.get(key, -DM_COOLDOWN_S) < DM_COOLDOWN_S:
            return
        self._dm_sent = {k: t for k, t in self._dm_sent.items() if now - t < DM_COOLDOWN_S}
        self._dm_sent[key] = now
        if not self._dm_copies.allow(payload.user_id):
            log.info("✉️ on job %s by user %s not sent: over %d copies a minute", job.id, payload.user_id,
                     DM_COPIES_PER_MINUTE)
            return
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        try:
            message = await channel.fetch_message(payload.message_id)
            files = [
                (a.filename, await asyncio.wait_for(a.read(), ATTACHMENT_READ_TIMEOUT_S)) for a in message.attachments
            ]
        except (discord.HTTPException, asyncio.TimeoutError) as e:
            log.info("✉️ on job %s: could not read its message %s: %s", job.id, payload.message_id, e)
            return
        if not files:
            return  # not finished yet, or its images were removed: nothing to send
        steps = job.steps if job.kind == "final" else None
        link = message_link(payload.guild_id, payload.channel_id, payload.message_id)
        text = render.direct_text(job, steps=steps, link=link)
        if await send_direct(self.bot, payload.user_id, text, files):
            log.info("✉️ job %s sent to user %s by DM", job.id, payload.user_id)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(PrefsCog(bot))
