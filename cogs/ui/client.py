"""The bot an interaction reached: every interaction this process handles comes through its own client."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import discord

from core.limits import Refusal

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # bot.py loads the cogs by name and imports only cogs.ui.layout: no cycle
    from bot import ImagineBot


def bot_of(interaction: discord.Interaction) -> ImagineBot:
    """``interaction.client``, which is the one ``bot.ImagineBot`` of this process (its store, engine, jobs)."""
    return cast("ImagineBot", interaction.client)


async def require_result_message(interaction: discord.Interaction, job_id: int, refusal: str) -> None:
    """Refuse (with ``refusal``) an interaction whose message is not the result message of job ``job_id``.

    A button, and a Remix form opened from one, counts only on the message its job was posted in;
    a job that does not exist is left to the job service ("There is no job #N").
    """
    if not 1 <= job_id < 2**63:
        return
    job = await bot_of(interaction).store.get_job(job_id)
    if job is None:
        return
    message = interaction.message
    if message is None or job.result_message_id != message.id:
        log.info(
            "%s on message %s refused: job %s was posted as message %s",
            interaction.data.get("custom_id") if interaction.data else None,
            message.id if message is not None else None,
            job.id,
            job.result_message_id,
        )
        raise Refusal(refusal)
