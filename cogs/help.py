"""/help: the bot's commands and what can be typed after a prompt (``--ar 16:9 --seed 5``, ``{a, b}``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core.delivery import NO_MENTIONS
from core.prompt_text import help_text

if TYPE_CHECKING:
    from bot import ImagineBot

EXAMPLES = (
    "`/imagine a fox in the snow --ar 16:9 --seed 5 --no trees, people`",
    "`/imagine a {red, blue} car`: one job per choice",
    "`/final stone wall texture --tile --steps 30 --model sdxl`",
)
EMBED_FIELD_LIMIT = 1024


class HelpCog(commands.Cog):
    """What the bot understands, in one private message."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot

    @app_commands.command(name="help", description="The commands, and the parameters you can type after a prompt.")
    @app_commands.guild_only()
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(embed=self.help_embed(), ephemeral=True, allowed_mentions=NO_MENTIONS)

    def help_embed(self) -> discord.Embed:
        """The commands as the tree has them (so the list never goes stale), then the prompt parameters."""
        embed = discord.Embed(title="What I understand")
        lines: list[str] = []
        for command in sorted(self.bot.tree.get_commands(), key=lambda c: c.name):
            if isinstance(command, app_commands.Group):
                lines.extend(f"`/{command.name} {sub.name}`: {sub.description}" for sub in command.commands)
            elif isinstance(command, app_commands.Command):
                lines.append(f"`/{command.name}`: {command.description}")
        embed.description = "\n".join(lines)[:4096]
        embed.add_field(name="In the prompt", value=help_text()[:EMBED_FIELD_LIMIT], inline=False)
        embed.add_field(name="For example", value="\n".join(EXAMPLES)[:EMBED_FIELD_LIMIT], inline=False)
        return embed


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(HelpCog(bot))
