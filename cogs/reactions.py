"""Which reactions reach the cogs: the filter ``cogs.imagine`` (🔁 1️⃣-4️⃣ ❌) and ``cogs.prefs`` (⭐ ✉️) share.

A reaction counts only on one of our result messages, in a server, with a standard emoji, by a member
who is not a bot; our own reactions and reactions on any other message are ignored.
Not an extension: nothing here is loaded by ``setup_hook``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from core.history import JobRecord

if TYPE_CHECKING:
    from bot import ImagineBot


def plain_emoji(emoji: discord.PartialEmoji) -> str | None:
    """A standard emoji's name without variation selectors (clients send keycaps both with and without
    U+FE0F); None for a server's custom emoji."""
    if emoji.id is not None or emoji.name is None:
        return None
    return emoji.name.replace("\ufe0f", "")


async def reacted_job(bot: ImagineBot, payload: discord.RawReactionActionEvent) -> JobRecord | None:
    """The job whose result message got this reaction, or None when the reaction is not for us."""
    if payload.guild_id is None or plain_emoji(payload.emoji) is None:
        return None
    me = bot.user
    if me is None or payload.user_id == me.id:
        return None
    if payload.message_author_id is not None and payload.message_author_id != me.id:
        return None  # Discord says whose message it is: not ours
    if payload.member is not None and payload.member.bot:
        return None
    job = await bot.store.job_by_message(payload.message_id)
    if job is None or job.result_message_id != payload.message_id or job.guild_id != payload.guild_id:
        return None  # not one of our job messages
    return job
