"""What ``core`` asks of the buttons under the bot's messages, and the 🔁 reaction; the buttons are the cogs'.

The job service posts results and /describe's answers with whatever views a :class:`Controls` gives it;
``bot.py`` hands it ``cogs.ui.layout.Layout``, which writes the buttons and their custom ids, and
``cogs.ui.buttons`` answers the clicks. ``core`` defines no widget.
"""

from __future__ import annotations

from typing import Protocol

import discord

from core.history import JobRecord

REROLL_EMOJI = "🔁"  # the bot's reaction under every result: 🔁 makes the job again with a new seed


class Controls(Protocol):
    """The views (stopped, holding only buttons with custom ids) that go under the bot's messages."""

    def for_result(self, job: JobRecord, *, upscaler: str = "") -> discord.ui.View:
        """The buttons of a finished job; Upscale ones only where the engine offers an ``upscaler``."""
        ...

    def for_suggestions(self, count: int) -> discord.ui.View:
        """One button per suggestion of /describe's answer (``count`` of them)."""
        ...
