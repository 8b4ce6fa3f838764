"""/prefer, ⭐ and ✉️ end to end: defaults shape new prompts (and the row keeps the effective values),
results come by DM when asked, ⭐ by the author marks a favourite that /history favorites:true lists,
✉️ DMs the result's images with their parameters; closed DMs are ignored quietly."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.support import BASE_ENV, RunningBot, new_user, query, quiet, refusal_of, result_of
from tests.fakediscord import FakeDiscord, FakeUser, StoredMessage
from tests.fakediscord.records import FLAG_EPHEMERAL

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

STAR = "⭐"
ENVELOPE = "✉\ufe0f"  # ✉️ as Discord clients send it
WANDB_INSTALLED = importlib.util.find_spec("wandb") is not None


# Run logging asked for without the wandb package: one warning line at start, finals still delivered.
BOT_ENV = dict(BASE_ENV) if WANDB_INSTALLED else {**BASE_ENV, "WANDB_PROJECT": "e2e-finals"}


@dataclass
class Styled:
    author: FakeUser
    message: StoredMessage
    job: dict[str, Any]


async def answer(bot: RunningBot, name: str, options: dict[str, Any], user: FakeUser) -> str:
    interaction = await bot.fake.slash(name, options, user=user)
    [message] = await interaction.wait_messages(lambda found: len(found) >= 1, 10)
    assert message.flags & FLAG_EPHEMERAL, f"/{name} answered in public: {message.content!r}"
    return message.content


@contextlib.contextmanager
def without_subcommand_bounds(fake: FakeDiscord, command: str, sub: str, option: str) -> Iterator[None]:
    """Drop the synced length bounds of one subcommand option, as a raw interaction may."""
    saved = copy.deepcopy(fake.commands)
    try:
        for entries in fake.commands.values():
            for entry in entries:
                for subcommand in entry.get("options") or [] if entry.get("name") == command else []:
                    for item in subcommand.get("options") or [] if subcommand.get("name") == sub else []:
                        if item.get("name") == option:
                            item.pop("max_length", None)
        yield
    finally:
        fake.commands = saved


def dms_of(bot: RunningBot, user: FakeUser) -> list[StoredMessage]:
    return bot.fake.messages(bot.fake.dm_channel(user), author=bot.fake.world.bot)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def styled(module_bot: RunningBot) -> Styled:
    """A member with defaults (16:9, a style suffix, results by DM) and one finished /imagine."""
    bot = module_bot
    author = new_user(bot.fake, "stylist")
    saved = await answer(bot, "prefer set", {"aspect": "16:9", "style": "watercolor", "dm": True}, author)
    assert "16:9" in saved and "watercolor" in saved and "Results by DM: on" in saved, saved
    interaction = await bot.fake.slash("imagine", {"prompt": "a lighthouse", "seed": 3}, user=author)
    message = await result_of(interaction, files=4)
    job = await bot.finished_job_for(message)
    return Styled(author, message, job)


async def test_defaults_fill_the_prompt_and_the_row_keeps_the_effective_values(bot: RunningBot, styled: Styled):
    assert all(image.size == (704, 384) for image in styled.message.images())
    job = styled.job
    assert job["status"] == "done" and job["prompt"] == "a lighthouse, watercolor"
    assert job["params"]["aspect"] == "16:9" and job["params"]["prefs"] == ["aspect", "style_suffix"]
    [prefs] = query(bot.db_path, "SELECT * FROM user_prefs WHERE user_id = ?", (int(styled.author.id),))
    assert (prefs["aspect"], prefs["style_suffix"], prefs["dm_results"]) == ("16:9", "watercolor", 1)


async def test_results_also_come_by_dm_when_asked(bot: RunningBot, styled: Styled):
    [dm] = await bot.fake.wait_for(lambda: dms_of(bot, styled.author) or None, 30, "the DM copy")
    assert len(dm.attachments) == 4 and "seed `3`" in dm.content and "a lighthouse, watercolor" in dm.content


async def test_refusals_are_specific_and_ephemeral(bot: RunningBot):
    user = new_user(bot.fake, "refused")
    with without_subcommand_bounds(bot.fake, "prefer", "set", "style"):
        refusal = await refusal_of(await bot.fake.slash("prefer set", {"style": "w" * 250}, user=user))
    assert "limit is 200" in refusal.content
    assert query(bot.db_path, "SELECT * FROM user_prefs WHERE user_id = ?", (int(user.id),)) == []


async def test_star_marks_a_favourite_for_its_author_only(bot: RunningBot, styled: Styled):
    fake = bot.fake

    def favorite() -> int:
        return bot.jobs("id = ?", (styled.job["id"],))[0]["favorite"]

    await fake.react(styled.message, STAR, new_user(fake, "fan"))
    await quiet(fake)
    assert favorite() == 0
    await fake.react(styled.message, STAR, styled.author)
    await fake.wait_for(lambda: favorite() == 1, 10, "the favourite mark")
    listed = await answer(bot, "history", {"favorites": True}, styled.author)
    assert f"#{styled.job['id']}" in listed and "Favourites" in listed, listed
    await fake.unreact(styled.message, STAR, styled.author)
    await fake.wait_for(lambda: favorite() == 0, 10, "the favourite mark removed")
    empty = await answer(bot, "history", {"favorites": True}, styled.author)
    assert "No favourites yet" in empty, empty


async def test_envelope_dms_the_images_with_their_parameters(bot: RunningBot, styled: Styled):
    fake = bot.fake
    reader = new_user(fake, "reader")
    await fake.react(styled.message, ENVELOPE, reader)
    [dm] = await fake.wait_for(lambda: dms_of(bot, reader) or None, 30, "the ✉️ copy")
    assert [a.filename for a in dm.attachments] == [a.filename for a in styled.message.attachments]
    assert "a lighthouse, watercolor" in dm.content and "seed `3`" in dm.content and "turbo" in dm.content
    assert "Steps: 1" in dm.content and styled.message.id in dm.content


async def test_envelope_with_closed_dms_is_ignored_quietly(bot: RunningBot, styled: Styled):
    fake = bot.fake
    shy = fake.make_user("shy", accepts_dms=False)
    await fake.react(styled.message, ENVELOPE, shy)
    await quiet(fake, 3.0)
    fake.take_errors()  # the refused DM (403, 50007) is what Discord answers; the bot only logs it at info
    assert not dms_of(bot, shy)


@pytest.mark.skipif(WANDB_INSTALLED, reason="checks the warning given when the wandb package is missing")
async def test_run_logging_without_wandb_is_one_warning_and_finals_still_work(bot: RunningBot):
    sailor = new_user(bot.fake, "sailor")
    interaction = await bot.fake.slash("final", {"prompt": "a small boat", "seed": 4}, user=sailor)
    final = await result_of(interaction, files=1)
    assert (await bot.finished_job_for(final))["status"] == "done"
    assert bot.process.log.count("wandb package is missing") == 1, bot.process.log_tail(40)
