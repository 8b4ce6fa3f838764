"""Style presets end to end: an admin adds one, a member draws with it, 🔁 repeats the same styled text."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.e2e.support import RunningBot, new_user, result_of
from tests.fakediscord.records import FLAG_EPHEMERAL

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_a_servers_style_shapes_the_drafts_and_the_reroll(bot: RunningBot) -> None:
    fake = bot.fake
    added = await fake.slash(
        "settings style add", {"name": "noir", "prompt_suffix": "film noir", "negative": "color"},
        user=fake.world.moderator,
    )
    [reply] = await added.wait_messages(lambda found: len(found) >= 1, 10)
    assert reply.flags & FLAG_EPHEMERAL and "Style `noir` added" in reply.content

    member = new_user(fake, "stylist")
    drafts = await result_of(await fake.slash("imagine", {"prompt": "a lighthouse", "style": "noir"}, user=member), 4)
    job = await bot.finished_job_for(drafts)
    assert job["prompt"] == "a lighthouse, film noir"
    assert (job["negative_prompt"], job["params"]["style"]) == ("color", "noir")
    assert "a lighthouse, film noir" in Image.open(io.BytesIO(drafts.attachments[0].data)).info["parameters"]

    reroll = await result_of(await fake.click(drafts, f"job:{job['id']}:reroll", member), 4)
    again = await bot.finished_job_for(reroll)
    assert (again["prompt"], again["negative_prompt"], again["params"]["style"]) == (
        job["prompt"], job["negative_prompt"], "noir",
    )
    assert again["seed"] != job["seed"]
