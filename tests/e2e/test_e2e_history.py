"""/history end to end: a member sees their prompts (newest first) and can search them; another member's
history is private unless the caller is a moderator."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.e2e.support import RunningBot, new_user, refusal_of, result_of
from tests.fakediscord import FakeUser
from tests.fakediscord.records import FLAG_EPHEMERAL

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

FOX = "a quiet fox under the moon"
OWL = "an owl reading a newspaper"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def historian(module_bot: RunningBot) -> FakeUser:
    """A member with two finished drafts: the fox first, then the owl."""
    fake = module_bot.fake
    user = new_user(fake, "historian")
    for prompt in (FOX, OWL):
        interaction = await fake.slash("imagine", {"prompt": prompt}, user=user)
        message = await result_of(interaction, files=4)
        await module_bot.finished_job_for(message)
    return user


async def history(bot: RunningBot, caller: FakeUser, **options: object) -> str:
    """What ``caller`` reads after ``/history`` with ``options``: an ephemeral message."""
    interaction = await bot.fake.slash("history", options, user=caller)
    [message] = await interaction.wait_messages(lambda found: len(found) >= 1, 10)
    assert message.flags & FLAG_EPHEMERAL, f"/history answered in public: {message.content!r}"
    return message.content


async def test_history_shows_my_prompts_newest_first(bot: RunningBot, historian: FakeUser) -> None:
    text = await history(bot, historian)
    assert FOX in text and OWL in text, text
    assert text.index(OWL) < text.index(FOX), f"not newest first:\n{text}"
    for job in bot.jobs("user_id = ?", (int(historian.id),)):
        assert f"#{job['id']}" in text


async def test_history_search_finds_the_prompt(bot: RunningBot, historian: FakeUser) -> None:
    found = await history(bot, historian, search="newspaper")
    assert OWL in found and FOX not in found, found
    found = await history(bot, historian, search="MOON")
    assert FOX in found and OWL not in found, found
    nothing = await history(bot, historian, search="giraffe")
    assert FOX not in nothing and OWL not in nothing, nothing


async def test_another_members_history_is_private_except_for_moderators(
    bot: RunningBot, historian: FakeUser
) -> None:
    fake = bot.fake
    nosy = new_user(fake, "nosy")
    interaction = await fake.slash("history", {"user": historian}, user=nosy)
    refusal = await refusal_of(interaction)
    assert FOX not in refusal.content and OWL not in refusal.content, refusal.content

    own = await history(bot, nosy)
    assert FOX not in own and OWL not in own, own

    moderated = await history(bot, fake.world.moderator, user=historian)
    assert FOX in moderated and OWL in moderated, moderated
