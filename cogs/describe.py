"""/describe: three or four prompt suggestions for an uploaded image, each with a button that runs /imagine.

The command is registered only when the engine offers describe (``engine.offer.describe``, read as the
cog loads in ``setup_hook``, after ``engine.start()``). The buttons (``cogs.ui.buttons``) are registered
either way: a message posted while describe was on still works when it is off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.attachments import read_image, upload_turn
from cogs.ui.buttons import SuggestionButton
from core.limits import Refusal
from core.origins import InteractionOrigin

if TYPE_CHECKING:
    from bot import ImagineBot

log = logging.getLogger(__name__)


class DescribeCog(commands.Cog):
    """Prompts from an image."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(SuggestionButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(SuggestionButton)

    @app_commands.command(name="describe", description="Prompt ideas for an image, each a button away from drafts.")
    @app_commands.guild_only()
    @app_commands.describe(image="The image to describe (PNG, JPEG or WebP)")
    async def describe(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        origin = InteractionOrigin(interaction)
        await origin.defer()  # Discord first: the download and checks can take seconds
        jobs = self.bot.jobs
        try:
            async with upload_turn(jobs, origin):  # the member's limits before any download or decoding
                picture = await read_image(image, what="image", jobs=jobs)
        except Refusal as r:
            await origin.refuse(str(r))
            return
        await self.bot.jobs.describe(origin, picture)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(DescribeCog(bot))
    if not bot.engine.offer.describe:
        bot.tree.remove_command("describe")
        log.info("/describe is not registered: the engine does not offer describe")
