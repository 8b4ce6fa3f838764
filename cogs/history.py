"""/history (paged, searchable, favourites only, with a menu to re-post an entry), /show and /forget.

A member sees their own jobs in this server; moderators (Manage Messages for the whole server)
may look at another member's, in the channels they can see (``core.scope``). Pages are stateless:
the paging buttons carry viewer, member, page and search text in their custom ids (``histf:`` for
favourites), so they keep working after a restart.
A favourite is a job its author marked with ⭐ (``cogs.prefs``). ``/forget`` deletes everything the bot
keeps about the member who asks, after a confirmation (``cogs.ui.confirm``, ``core.forget``).
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.options import JobId, Page, Search
from cogs.ui.client import bot_of
from cogs.ui.confirm import FORGET_ASK, ForgetConfirm
from core import render
from core.delivery import NO_MENTIONS
from core.forget import forget_in_bot
from core.history import HistoryStore, JobRecord
from core.limits import Refusal, check_search
from core.origins import InteractionOrigin
from core.scope import readable_channel_ids, server_moderator
from core.tree import report_error

if TYPE_CHECKING:
    from bot import ImagineBot

log = logging.getLogger(__name__)

PAGE_SIZE = 10
MAX_PAGE = 10_000
STATUS_MARKS = {"queued": "⏳", "running": "🎨", "done": "✅", "failed": "⚠️", "cancelled": "✖️"}


def _job_line(job: JobRecord) -> str:
    mark = STATUS_MARKS.get(job.status, "")
    star = " ⭐" if job.favorite else ""
    line = f"`#{job.id}` {mark} <t:{int(job.created_at)}:R> · {job.kind}{star} — {render.shown(job.prompt, 90)}"
    if job.status == "done" and job.result_message_id is not None and job.guild_id is not None:
        channel = job.result_channel_id or job.channel_id
        line += f" [↗](<https://discord.com/channels/{job.guild_id}/{channel}/{job.result_message_id}>)"
    return line


async def history_page(
    interaction: discord.Interaction,
    store: HistoryStore,
    *,
    viewer_id: int,
    target_id: int,
    page: int,
    search: str | None,
    favorites: bool = False,
) -> tuple[str, discord.ui.View]:
    """The text and controls of one page. Raises Refusal."""
    channel_ids: list[int] | None = None
    if target_id != viewer_id:
        if not server_moderator(interaction.user):
            raise Refusal("Only moderators (Manage Messages for the whole server) can see another member's history.")
        channel_ids = readable_channel_ids(interaction.user)
    if not (1 <= page <= MAX_PAGE):
        raise Refusal(f"Page {page} does not exist; pages start at 1.")
    jobs, total = await store.history(
        user_id=target_id,
        guild_id=interaction.guild_id,
        search=search,
        favorites=favorites,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        channel_ids=channel_ids,
    )
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:
        raise Refusal(f"Page {page} does not exist; there {'is' if pages == 1 else 'are'} {pages}.")

    title = f"**{'Favourites' if favorites else 'History'} of <@{target_id}>**"
    if search:
        title += f" matching “{render.shown(search, 60)}”"
    if not jobs:
        if search:
            empty = "Nothing matches."
        elif favorites:
            empty = "No favourites yet: react ⭐ on one of your results."
        else:
            empty = "No jobs yet: try /imagine."
        return f"{title}\n{empty}", discord.ui.View()
    title += f" — page {page} of {pages}, {total} job{'s' if total != 1 else ''}"
    text = "\n".join([title, *(_job_line(job) for job in jobs)])[: render.MESSAGE_LIMIT]

    view = discord.ui.View(timeout=None)
    for number, label, disabled in ((page - 1, "◀ Newer", page <= 1), (page + 1, "Older ▶", page >= pages)):
        view.add_item(
            HistoryPageButton(viewer_id, target_id, number, search, label=label, disabled=disabled, favorites=favorites)
        )
    view.add_item(RepostSelect(viewer_id, jobs))
    view.stop()  # clicks reach the dynamic items through the registry; nothing to keep in memory
    return text, view


class HistoryPageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.compile(
        r"hist(?P<favorites>f?):(?P<viewer>[0-9]{1,20}):(?P<target>[0-9]{1,20}):(?P<page>[0-9]{1,5}):"
        r"(?P<search>.*)",
        re.S,
    ),
):
    def __init__(
        self,
        viewer_id: int,
        target_id: int,
        page: int,
        search: str | None,
        *,
        label: str,
        disabled: bool,
        favorites: bool = False,
    ) -> None:
        self.viewer_id, self.target_id, self.page, self.search = viewer_id, target_id, page, search or None
        self.favorites = favorites
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"hist{'f' if favorites else ''}:{viewer_id}:{target_id}:{page}:{search or ''}",
                disabled=disabled,
                row=0,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HistoryPageButton:
        if not isinstance(item, discord.ui.Button):
            raise TypeError(f"a history page custom id on a {type(item).__name__}, not a button")
        return cls(
            int(match["viewer"]),
            int(match["target"]),
            int(match["page"]),
            match["search"],
            label=item.label or "",
            disabled=item.disabled,
            favorites=bool(match["favorites"]),
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.user.id != self.viewer_id:
                raise Refusal("These buttons belong to someone else's /history; run /history yourself.")
            text, view = await history_page(
                interaction,
                bot_of(interaction).store,
                viewer_id=self.viewer_id,
                target_id=self.target_id,
                page=self.page,
                search=self.search,
                favorites=self.favorites,
            )
            await interaction.response.edit_message(content=text, view=view, allowed_mentions=NO_MENTIONS)
        except Exception as e:
            await report_error(interaction, e)


class RepostSelect(
    discord.ui.DynamicItem[discord.ui.Select],
    template=re.compile(r"histpost:(?P<viewer>[0-9]{1,20})"),
):
    def __init__(self, viewer_id: int, jobs: list[JobRecord] | None = None, select: discord.ui.Select | None = None):
        self.viewer_id = viewer_id
        if select is None:
            select = discord.ui.Select(
                custom_id=f"histpost:{viewer_id}",
                placeholder="Re-post one with live buttons…",
                options=[
                    discord.SelectOption(
                        label=f"#{job.id} {' '.join(job.prompt.split())}"[:100],
                        value=str(job.id),
                        description=f"{job.kind} · {job.status} · seed {job.seed}"[:100],
                    )
                    for job in (jobs or [])
                ],
                row=1,
            )
        super().__init__(select)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RepostSelect:
        if not isinstance(item, discord.ui.Select):
            raise TypeError(f"a re-post custom id on a {type(item).__name__}, not a menu")
        return cls(int(match["viewer"]), select=item)

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if interaction.user.id != self.viewer_id:
                raise Refusal("This menu belongs to someone else's /history; run /history yourself.")
            values = self.item.values
            if not values or not values[0].isdigit():
                raise Refusal("Pick a job from the list.")
            await bot_of(interaction).jobs.repost(InteractionOrigin(interaction), int(values[0]))
        except Exception as e:
            await report_error(interaction, e)


class HistoryCog(commands.Cog):
    """Past prompts: list, search, re-post."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(HistoryPageButton, RepostSelect)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(HistoryPageButton, RepostSelect)

    @app_commands.command(name="history", description="Your past prompts, newest first.")
    @app_commands.guild_only()
    @app_commands.describe(
        user="Whose history (moderators only for other members)",
        search="Only prompts containing this text",
        page="Page number (10 jobs a page)",
        favorites="Only your favourites (results you marked with ⭐)",
    )
    async def history(
        self,
        interaction: discord.Interaction,
        user: discord.User | None = None,
        search: Search | None = None,
        page: Page | None = None,
        favorites: bool = False,
    ) -> None:
        target = user.id if user is not None else interaction.user.id
        number = 1 if page is None else page
        if not isinstance(number, int) or isinstance(number, bool):
            raise Refusal("The page must be a whole number.")
        text, view = await history_page(
            interaction,
            self.bot.store,
            viewer_id=interaction.user.id,
            target_id=target,
            page=number,
            search=check_search(search),
            favorites=bool(favorites),
        )
        await interaction.response.send_message(text, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="show", description="Post one of your jobs again, with live buttons.")
    @app_commands.guild_only()
    @app_commands.describe(job="Job number (from /history or under a result)")
    async def show(self, interaction: discord.Interaction, job: JobId) -> None:
        await self.bot.jobs.repost(InteractionOrigin(interaction), job)

    @app_commands.command(name="forget", description="Delete everything I keep about you (asks first).")
    @app_commands.guild_only()  # like every command; it forgets the member everywhere (all servers, DMs)
    async def forget(self, interaction: discord.Interaction) -> None:
        user_id = interaction.user.id

        async def forget_now() -> str:
            report = await forget_in_bot(self.bot.jobs, self.bot.store, user_id)
            first = f" ({report.cancelled} waiting or running job(s) cancelled first)" if report.cancelled else ""
            return f"Done: I deleted {report.line()}{first}."

        await interaction.response.send_message(FORGET_ASK, view=ForgetConfirm(user_id, forget_now), ephemeral=True)


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(HistoryCog(bot))
