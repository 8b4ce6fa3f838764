"""Reactions on job messages: who and what is acted on, and what is ignored.

The bot and the message are thin doubles; the job service is an autospec of the real
JobService (a misspelled call fails), and the store is the real one on a temporary file.
"""

from __future__ import annotations

from unittest.mock import create_autospec

import discord
import pytest

from cogs.imagine import ImagineCog
from core.history import HistoryStore
from core.jobs import JobService
from core.limits import Refusal
from core.origins import MessageOrigin
from tests.core.doubles import FakeEngine
from tests.core.records import new_job

BOT_ID = 999
AUTHOR = 1
STRANGER = 2
GUILD = 10
CHANNEL = 100
RESULT_MESSAGE = 7000


class RecordingMessage:
    def __init__(self) -> None:
        self.deleted = False
        self.removed: list[tuple[str, int]] = []

    async def delete(self) -> None:
        self.deleted = True

    async def remove_reaction(self, emoji, member) -> None:
        self.removed.append((str(emoji), member.id))


class RecordingChannel:
    def __init__(self) -> None:
        self.message = RecordingMessage()

    def get_partial_message(self, message_id: int) -> RecordingMessage:
        assert message_id == RESULT_MESSAGE
        return self.message


class BotDouble:
    def __init__(self, store: HistoryStore) -> None:
        self.user = discord.Object(BOT_ID)
        self.store = store
        self.jobs = create_autospec(JobService, instance=True)
        self.engine = FakeEngine()  # its offer decides which add-on options the cog registers
        self.channel = RecordingChannel()

    def get_channel(self, channel_id: int):
        return None  # not cached: no age-restricted flag, no permissions

    def get_partial_messageable(self, channel_id: int, *, guild_id: int | None = None) -> RecordingChannel:
        return self.channel


async def make_job(store: HistoryStore, *, kind: str = "draft", status: str = "done") -> int:
    job = await store.create_job(
        new_job(
            kind=kind,
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=AUTHOR,
            model="turbo" if kind == "draft" else "ssd-1b",
            count=4 if kind == "draft" else 1,
        )
    )
    await store.set_result_message(job.id, CHANNEL, RESULT_MESSAGE)
    if status == "done":
        await store.finish_job(job.id, seeds=[1, 2, 3, 4], timings={})
    return job.id


def reaction(emoji: str, *, user: int = STRANGER, message: int = RESULT_MESSAGE, author: int | None = None):
    data = {"message_id": message, "channel_id": CHANNEL, "user_id": user, "guild_id": GUILD, "type": 0}
    if author is not None:
        data["message_author_id"] = author
    return discord.RawReactionActionEvent(data, discord.PartialEmoji(name=emoji), "REACTION_ADD")


@pytest.fixture
def bot(store):
    return BotDouble(store)


@pytest.fixture
def cog(bot):
    return ImagineCog(bot)  # type: ignore[arg-type]


async def test_reroll_reaction_by_a_user(cog, bot, store):
    job_id = await make_job(store)
    await cog.on_raw_reaction_add(reaction("🔁", author=BOT_ID))
    bot.jobs.reroll.assert_awaited_once()
    origin, called_id = bot.jobs.reroll.await_args.args
    assert called_id == job_id and isinstance(origin, MessageOrigin)
    assert (origin.user_id, origin.channel_id, origin.source_message_id) == (STRANGER, CHANNEL, RESULT_MESSAGE)


@pytest.mark.parametrize("emoji", ["2️⃣", "2\u20e3"])
async def test_number_reaction_makes_the_final_of_that_draft(cog, bot, store, emoji):
    job_id = await make_job(store)
    await cog.on_raw_reaction_add(reaction(emoji))
    origin, called_id, index = bot.jobs.final_of_draft.await_args.args
    assert (called_id, index) == (job_id, 1)


async def test_ignored_reactions(cog, bot, store):
    await make_job(store)
    await cog.on_raw_reaction_add(reaction("🔁", user=BOT_ID))  # our own
    await cog.on_raw_reaction_add(reaction("🔁", message=RESULT_MESSAGE + 1))  # not a job message
    await cog.on_raw_reaction_add(reaction("🔁", author=STRANGER))  # someone else's message
    await cog.on_raw_reaction_add(reaction("👍"))  # not one of ours
    final_id = await make_job(store, kind="final")
    assert final_id
    bot.jobs.reroll.reset_mock()
    await cog.on_raw_reaction_add(reaction("3️⃣"))  # a number on a final: no draft to make a final of
    bot.jobs.reroll.assert_not_awaited()
    bot.jobs.final_of_draft.assert_not_awaited()
    bot.jobs.cancel.assert_not_awaited()


async def test_cross_by_a_stranger_is_refused(cog, bot, store):
    await make_job(store)
    await cog.on_raw_reaction_add(reaction("❌", user=STRANGER))
    assert not bot.channel.message.deleted
    assert bot.channel.message.removed == [("❌", STRANGER)]


async def test_cross_by_the_author_deletes_a_finished_result(cog, bot, store):
    await make_job(store)
    await cog.on_raw_reaction_add(reaction("❌", user=AUTHOR))
    assert bot.channel.message.deleted
    bot.jobs.cancel.assert_not_awaited()


async def test_cross_by_the_author_cancels_a_waiting_job(cog, bot, store):
    job_id = await make_job(store, status="queued")
    await cog.on_raw_reaction_add(reaction("❌", user=AUTHOR))
    bot.jobs.cancel.assert_awaited_once_with(job_id, user_id=AUTHOR, moderator=False, guild_id=GUILD)
    assert not bot.channel.message.deleted


async def test_cancel_refusal_is_answered_in_the_channel(cog, bot, store, monkeypatch):
    await make_job(store, status="queued")
    bot.jobs.cancel.side_effect = Refusal("Job #1 is finishing.")
    answers = []

    async def refuse(self, text):
        answers.append(text)

    monkeypatch.setattr(MessageOrigin, "refuse", refuse)
    await cog.on_raw_reaction_add(reaction("❌", user=AUTHOR))
    assert answers == ["Job #1 is finishing."]
