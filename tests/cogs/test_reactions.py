"""The reaction filter both reaction cogs share: only standard emoji, by members, on our job results."""

from __future__ import annotations

from types import SimpleNamespace

import discord
import pytest

from cogs.reactions import plain_emoji, reacted_job
from tests.core.records import new_job

BOT_ID = 999
MEMBER = 2
GUILD = 10
CHANNEL = 100
RESULT = 7000


@pytest.fixture
async def job_id(store) -> int:
    job = await store.create_job(new_job(guild_id=GUILD, channel_id=CHANNEL, user_id=1))
    await store.set_result_message(job.id, CHANNEL, RESULT)
    return job.id


def reaction(
    emoji: discord.PartialEmoji | str = "🔁",
    *,
    user: int = MEMBER,
    message: int = RESULT,
    guild: int | None = GUILD,
    author: int | None = None,
    bot_member: bool = False,
) -> discord.RawReactionActionEvent:
    data = {"message_id": message, "channel_id": CHANNEL, "user_id": user, "type": 0}
    if guild is not None:
        data["guild_id"] = guild
    if author is not None:
        data["message_author_id"] = author
    partial = emoji if isinstance(emoji, discord.PartialEmoji) else discord.PartialEmoji(name=emoji)
    payload = discord.RawReactionActionEvent(data, partial, "REACTION_ADD")
    if bot_member:
        payload.member = SimpleNamespace(bot=True)  # type: ignore[assignment]
    return payload


def test_plain_emoji_drops_variation_selectors_and_custom_emoji():
    assert plain_emoji(discord.PartialEmoji(name="2\ufe0f\u20e3")) == plain_emoji(discord.PartialEmoji(name="2\u20e3"))
    assert plain_emoji(discord.PartialEmoji(name="✉️")) == "✉"
    assert plain_emoji(discord.PartialEmoji(name="party", id=123)) is None


async def test_a_members_reaction_on_our_result_finds_its_job(store, job_id):
    bot = SimpleNamespace(user=discord.Object(BOT_ID), store=store)
    assert (await reacted_job(bot, reaction())).id == job_id  # type: ignore[arg-type, union-attr]
    assert (await reacted_job(bot, reaction(author=BOT_ID))).id == job_id  # type: ignore[arg-type, union-attr]


@pytest.mark.parametrize(
    "payload",
    [
        reaction(user=BOT_ID),  # our own
        reaction(bot_member=True),  # another bot
        reaction(author=MEMBER),  # Discord says the message is someone else's
        reaction(message=RESULT + 1),  # not a job's result
        reaction(guild=GUILD + 1),  # the same message id in another server
        reaction(guild=None),  # a DM
        reaction(discord.PartialEmoji(name="party", id=123)),  # a server's custom emoji
    ],
    ids=["own", "bot", "other author", "other message", "other server", "dm", "custom emoji"],
)
async def test_reactions_that_are_not_for_us(store, job_id, payload):
    bot = SimpleNamespace(user=discord.Object(BOT_ID), store=store)
    assert await reacted_job(bot, payload) is None  # type: ignore[arg-type]


async def test_nothing_is_for_us_before_we_are_logged_in(store, job_id):
    bot = SimpleNamespace(user=None, store=store)
    assert await reacted_job(bot, reaction()) is None  # type: ignore[arg-type]
