"""/queue (what is waiting, where your jobs are, how long) and /cancel."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.options import JobId
from core import render
from core.delivery import NO_MENTIONS
from core.limits import Refusal
from core.scope import moderates

if TYPE_CHECKING:
    from bot import ImagineBot

log = logging.getLogger(__name__)

MAX_LISTED = 10


class QueueCog(commands.Cog):
    """The shared queue, seen from one member."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot

    @app_commands.command(name="queue", description="What is waiting, and where your jobs are.")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        snapshot = await self.bot.engine.queue_snapshot()
        active = self.bot.jobs.active()
        running = [info for info in snapshot if info.state == "running"]
        waiting = [info for info in snapshot if info.state == "waiting"]
        # Done in the engine, not yet posted (a slow or rate-limited channel): still the user's job.
        in_engine = {info.job_id for info in snapshot}
        posting = [job for job_id, job in sorted(active.items()) if str(job_id) not in in_engine]
        summary = f"**Queue:** {len(running)} running, {len(waiting)} waiting"
        if posting:
            summary += f", {len(posting)} being posted"
        if waiting:
            summary += f"; all done {render.eta_text(max(info.eta_s for info in waiting))}"
        lines = [summary + "."]

        mine: list[str] = []
        for info in snapshot:
            job = active.get(int(info.job_id)) if info.job_id.isdigit() else None
            if job is not None and job.user_id == interaction.user.id:
                where = "running now" if info.state == "running" else f"position {info.position}"
                mine.append(
                    f"• job #{job.id} ({job.kind}) {render.shown(job.prompt, 60)} — {where}, "
                    f"done {render.eta_text(info.eta_s)}"
                )
        for job in posting:
            if job.user_id == interaction.user.id:
                mine.append(f"• job #{job.id} ({job.kind}) {render.shown(job.prompt, 60)} — made, being posted")
        if not mine:
            lines.append("You have nothing in the queue.")
        lines.extend(mine[:MAX_LISTED])
        if len(mine) > MAX_LISTED:
            lines.append(f"…and {len(mine) - MAX_LISTED} more.")
        await interaction.response.send_message("\n".join(lines), ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="cancel", description="Cancel your waiting or running job (the newest if no number).")
    @app_commands.guild_only()
    @app_commands.describe(job="Job number (default: your newest job still in the queue)")
    async def cancel(self, interaction: discord.Interaction, job: JobId | None = None) -> None:
        jobs = self.bot.jobs
        if job is None:
            mine = [j.id for j in jobs.active().values() if j.user_id == interaction.user.id]
            if not mine:
                raise Refusal("You have no job waiting or running.")
            job = max(mine)
        record = await self.bot.store.get_job(job)
        text = await jobs.cancel(
            job,
            user_id=interaction.user.id,
            moderator=record is not None and moderates(interaction.user, record),
            guild_id=interaction.guild_id,
        )
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(QueueCog(bot))
