"""The bot an interaction reached: every interaction this process handles comes through its own client."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import discord

if TYPE_CHECKING:  # bot.py loads the cogs by name and imports only cogs.ui.layout: no cycle
    from bot import ImagineBot


def bot_of(interaction: discord.Interaction) -> ImagineBot:
    """``interaction.client``, which is the one ``bot.ImagineBot`` of this process (its store, engine, jobs)."""
    return cast("ImagineBot", interaction.client)
