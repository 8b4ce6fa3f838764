"""Reactions and buttons on a result: 🔁 rerolls, U2 and 2️⃣ make the final of draft 2, ❌ deletes for its
author only; the bot's own reactions and reactions on other messages do nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.support import (
    BASE_ENV,
    RunningBot,
    bot_message_ids,
    message_calls,
    new_user,
    quiet,
    reply_with_files,
    result_of,
    status_texts,
)
from tests.fakediscord import FakeUser, StoredMessage
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

REROLL = "🔁"
CROSS = "❌"
TWO = "2\ufe0f\u20e3"  # 2️⃣ as Discord clients send it
PROGRESS = re.compile(r"\b\d+\s*/\s*\d+\b")  # "step 1/2"


# 4 final steps: an upscale (strength 0.5) runs 2 of them, so there is progress to show.
BOT_ENV = {**BASE_ENV, "FINAL_STEPS": "4", "ENGINE_TINY_DETAIL": "photo"}  # the same bot as test_e2e_imagine.py


@dataclass
class Drafted:
    author: FakeUser
    message: StoredMessage
    job: dict[str, Any]


async def imagine(bot: RunningBot, author: FakeUser, prompt: str, seed: int) -> Drafted:
    interaction = await bot.fake.slash("imagine", {"prompt": prompt, "seed": seed}, user=author)
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    message = await result_of(interaction, files=4)
    job = await bot.finished_job_for(message)
    assert job["status"] == "done"
    await bot.fake.wait_for(lambda: bot.fake.bot_user.id in message.reactions.get(REROLL, []), 10, "the bot's 🔁")
    return Drafted(author, message, job)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def drafted(module_bot: RunningBot) -> Drafted:
    """One draft message shared by the tests that do not delete it."""
    return await imagine(module_bot, new_user(module_bot.fake, "drafter"), "a castle on a hill", 500)


def assert_progress_before_final(message: StoredMessage) -> None:
    texts = status_texts(message)
    shown_progress = [text for text in texts[:-1] if PROGRESS.search(text)]
    assert shown_progress, f"no progress (step i/n) was shown before the final: {texts}"


async def test_reroll_reaction_makes_new_drafts_with_new_seeds(bot: RunningBot, drafted: Drafted) -> None:
    fake = bot.fake
    reroller = new_user(fake, "reroller")
    before = bot_message_ids(fake)
    await fake.react(drafted.message, REROLL, reroller)
    reply = await reply_with_files(fake, drafted.message, files=4, exclude=before)
    assert len(reply.images()) == 4 and all(image.size == (512, 512) for image in reply.images())
    job = await bot.finished_job_for(reply)
    assert job["status"] == "done"
    assert job["user_id"] == int(reroller.id) and job["prompt"] == "a castle on a hill"
    assert job["parent_id"] == drafted.job["id"]
    assert len(job["seeds"]) == 4 and set(job["seeds"]).isdisjoint(drafted.job["seeds"]), job["seeds"]
    assert job["seeds"] == [job["seed"] + i for i in range(4)]
    assert str(job["seed"]) in reply.content


async def test_own_reaction_and_reactions_on_other_messages_do_nothing(bot: RunningBot, drafted: Drafted) -> None:
    fake = bot.fake
    jobs_before = len(bot.jobs())
    posts_before = len(message_calls(fake))

    # The bot's own 🔁, added again (Discord echoes the bot's reactions back to it).
    await fake.unreact(drafted.message, REROLL, fake.bot_user)
    await fake.react(drafted.message, REROLL, fake.bot_user)
    # Reactions on a member's message and on nothing the bot knows.
    someone = new_user(fake, "someone")
    plain = await fake.say(content="look at my cat", user=someone)
    for emoji in (REROLL, TWO, CROSS):
        await fake.react(plain, emoji, drafted.author)

    await quiet(fake)
    assert len(bot.jobs()) == jobs_before, bot.jobs("id > ?", (drafted.job["id"],))
    assert message_calls(fake)[posts_before:] == [], "the bot posted or edited something"
    assert not plain.deleted and not drafted.message.deleted


async def test_u2_button_makes_the_final_of_draft_2_with_progress_first(bot: RunningBot, drafted: Drafted) -> None:
    fake = bot.fake
    click = await fake.click(drafted.message, f"job:{drafted.job['id']}:u2", drafted.author)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    assert click.callback_delay is not None and click.callback_delay < 3.0
    final = await result_of(click, files=1)
    [image] = final.images()
    assert image.size == (1024, 1024)
    assert_progress_before_final(final)
    job = await bot.finished_job_for(final)
    assert job["status"] == "done" and job["kind"] == "final"
    assert (job["parent_id"], job["parent_index"]) == (drafted.job["id"], 1)
    assert job["seeds"] == [drafted.job["seeds"][1]]
    assert f"Seed: {drafted.job['seeds'][1]}" in image.info.get("parameters", "")


async def test_number_reaction_makes_the_final_of_that_draft(bot: RunningBot, drafted: Drafted) -> None:
    fake = bot.fake
    fan = new_user(fake, "fan")
    before = bot_message_ids(fake)
    await fake.react(drafted.message, TWO, fan)
    final = await reply_with_files(fake, drafted.message, files=1, exclude=before)
    [image] = final.images()
    assert image.size == (1024, 1024)
    assert_progress_before_final(final)
    job = await bot.finished_job_for(final)
    assert job["kind"] == "final" and job["user_id"] == int(fan.id)
    assert (job["parent_id"], job["parent_index"]) == (drafted.job["id"], 1)
    assert job["seeds"] == [drafted.job["seeds"][1]]


async def test_cross_deletes_for_the_author_and_a_moderator_only(bot: RunningBot) -> None:
    fake = bot.fake
    author = new_user(fake, "author")
    mine = await imagine(bot, author, "a paper boat", 77)

    await fake.react(mine.message, CROSS, fake.world.bob)
    await quiet(fake)
    assert not mine.message.deleted, "❌ by someone else deleted the message"
    await fake.wait_for(lambda: fake.world.bob.id not in mine.message.reactions.get(CROSS, []), 5,
                        "the refused ❌ to be taken off")

    await fake.react(mine.message, CROSS, author)
    await fake.wait_for(lambda: mine.message.deleted, 10, "the author's ❌ to delete the message")
    [row] = bot.jobs("id = ?", (mine.job["id"],))
    assert row["status"] == "done", "the history keeps the job"

    theirs = await imagine(bot, new_user(fake, "other-author"), "a paper plane", 78)
    await fake.react(theirs.message, CROSS, fake.world.moderator)
    await fake.wait_for(lambda: theirs.message.deleted, 10, "a moderator's ❌ to delete the message")
