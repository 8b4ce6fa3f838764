"""Hostile input end to end: over-long, invisible and emoji-only prompts, out-of-range seeds, SQL in /history
search, an image-channel message with only an attachment, and ``@everyone`` (nobody is ever pinged).

Where Discord's own client enforces a bound the bot declared, the test checks the declaration and then
sends the value anyway, as a raw interaction may: the bot must refuse it itself."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests.e2e.support import (
    RunningBot,
    assert_no_mentions,
    bot_message_ids,
    new_user,
    quiet,
    refusal_of,
    reply_with_files,
    result_of,
    synced_option,
    without_option_bounds,
)
from tests.fakediscord import FakeUser, Upload
from tests.fakediscord.records import FLAG_EPHEMERAL

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

MAX_PROMPT = 1000
MAX_SEED = 2**32 - 1


def rows_of(bot: RunningBot, user: FakeUser) -> list[dict]:
    return bot.jobs("user_id = ?", (int(user.id),))


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_prompt_over_1000_characters_is_refused(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "verbose")
    assert synced_option(fake, "imagine", "prompt").get("max_length") == MAX_PROMPT
    with pytest.raises(ValueError, match="length 1001"):
        await fake.slash("imagine", {"prompt": "x" * 1001}, user=user)

    with without_option_bounds(fake, "imagine", "prompt"):
        interaction = await fake.slash("imagine", {"prompt": "a" * 1001}, user=user)
        refusal = await refusal_of(interaction)
    assert re.search(r"1,?000", refusal.content), refusal.content
    await quiet(fake, 0.5)
    assert rows_of(bot, user) == [], "a refused prompt was stored"

    # Exactly 1,000 characters, of the kind that grow when escaped: accepted, and the message still fits.
    longest = ("@everyone *_~`|> " * 100)[:MAX_PROMPT]
    accepted = await fake.slash("imagine", {"prompt": longest}, user=user)
    message = await result_of(accepted, files=4)
    assert len(message.content) <= 2000
    job = await bot.finished_job_for(message)
    assert job["status"] == "done" and len(job["prompt"]) == MAX_PROMPT


async def test_emoji_only_prompt_is_drawn_and_invisible_prompts_are_refused(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "emoji")
    drawn = await fake.slash("imagine", {"prompt": "🦊🌙✨"}, user=user)
    message = await result_of(drawn, files=4)
    job = await bot.finished_job_for(message)
    assert job["status"] == "done" and job["prompt"] == "🦊🌙✨"

    for invisible in ("\u200b\u200c\u200d\u2060\ufeff", "   \t ", "\u3164\u2800"):
        interaction = await fake.slash("imagine", {"prompt": invisible}, user=user)
        refusal = await refusal_of(interaction)
        assert "prompt" in refusal.content.lower(), refusal.content
    await quiet(fake, 0.5)
    assert [row["id"] for row in rows_of(bot, user)] == [job["id"]], "an invisible prompt was stored"


@pytest.mark.parametrize("seed", [-1, 2**40])
async def test_seed_out_of_range_is_refused(bot: RunningBot, seed: int) -> None:
    fake = bot.fake
    user = new_user(fake, "seeder")
    option = synced_option(fake, "imagine", "seed")
    assert (option.get("min_value"), option.get("max_value")) == (0, MAX_SEED)
    with pytest.raises(ValueError):
        await fake.slash("imagine", {"prompt": "a seeded tree", "seed": seed}, user=user)

    with without_option_bounds(fake, "imagine", "seed"):
        interaction = await fake.slash("imagine", {"prompt": "a seeded tree", "seed": seed}, user=user)
        refusal = await refusal_of(interaction)
    assert "seed" in refusal.content.lower() and str(MAX_SEED) in refusal.content, refusal.content
    await quiet(fake, 0.5)
    assert rows_of(bot, user) == []


SEARCHABLE = {
    "quotes": 'it\'s 100% "real"',
    "plain": "plain 100 cats",
    "underscore": "snake_case dog",
    "injection": "Robert'); DROP TABLE jobs;--",
}
SEARCHES = {
    "%": {"quotes"},
    "100%": {"quotes"},
    "_": {"underscore"},
    '"': {"quotes"},
    "'": {"quotes", "injection"},
    "); DROP TABLE jobs;--": {"injection"},
    "' OR '1'='1": set(),
    "%%": set(),
}


async def test_history_search_with_sql_quotes_and_percent_is_literal(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "searcher")
    ids = {}
    for name, prompt in SEARCHABLE.items():
        message = await result_of(await fake.slash("imagine", {"prompt": prompt}, user=user), files=4)
        ids[name] = (await bot.finished_job_for(message))["id"]

    for search, expected in SEARCHES.items():
        interaction = await fake.slash("history", {"search": search}, user=user)
        [answer] = await interaction.wait_messages(lambda found: len(found) >= 1, 10)
        assert answer.flags & FLAG_EPHEMERAL
        shown = {name for name, job_id in ids.items() if re.search(rf"#{job_id}(?!\d)", answer.content)}
        assert shown == expected, f"search {search!r} showed {sorted(shown)}:\n{answer.content}"
    assert len(bot.jobs("user_id = ?", (int(user.id),))) == len(SEARCHABLE), "the jobs table lost rows"


async def test_image_channel_message_with_only_an_attachment(bot: RunningBot) -> None:
    fake = bot.fake
    channel = fake.world.nsfw
    added = await fake.slash("settings channels add", {"channel": channel}, user=fake.world.moderator)
    [answer] = await added.wait_messages(lambda found: len(found) >= 1, 10)
    assert answer.flags & FLAG_EPHEMERAL

    user = new_user(fake, "poster")
    prompt = await fake.say(channel, "@everyone a lantern in the dark", user=user)
    drafts = await reply_with_files(fake, prompt, files=4)
    assert len(drafts.images()) == 4
    await bot.finished_job_for(drafts)

    before = bot_message_ids(fake)
    only_file = await fake.say(channel, "", user=user, attachments=[Upload("cat.png", png())])
    await quiet(fake)
    answers = [message for message in fake.messages(channel, include_deleted=True)
               if message.id not in before and message.author.id == fake.bot_user.id]
    assert all(not message.attachments for message in answers), "drafts from an image without a prompt"
    for message in answers:  # answering is optional; an answer is short and says what to do
        assert message.reply_to == only_file.id and 0 < len(message.content) <= 400, message.content
    assert len(rows_of(bot, user)) == 1, "a job was stored for a message without a prompt"


async def test_everyone_in_a_prompt_pings_nobody_in_any_bot_message(bot: RunningBot) -> None:
    """Last in the module: it checks every message the bot posted or edited here, refusals included."""
    fake = bot.fake
    user = new_user(fake, "pinger")
    text = f"@everyone @here {fake.world.alice.mention} {fake.world.moderator_role.mention} a loud party"
    message = await result_of(await fake.slash("imagine", {"prompt": text}, user=user), files=4)
    assert "a loud party" in message.content
    job = await bot.finished_job_for(message)
    assert job["prompt"] == text
    assert_no_mentions(fake)
