"""Prompt craft end to end on the tiny preset: parameters typed after the prompt, a permutation that makes
two messages, a --tile final with its 2x2 preview, and a server's style preset (an admin adds one, a member
draws with it, 🔁 repeats the same styled text)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.api import size_for_aspect
from tests.e2e.support import RESULT_TIMEOUT, RunningBot, new_user, result_of
from tests.fakediscord.records import FLAG_EPHEMERAL

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DRAFT_SIZE = 512  # the bot's default


async def test_parameters_in_the_prompt_shape_the_drafts_the_row_and_the_reroll(bot: RunningBot) -> None:
    user = new_user(bot.fake, "crafter")
    typed = "a (fox:1.3) in snow --ar 16:9 --seed 5 --no trees --chaos 40"
    drafts = await result_of(await bot.fake.slash("imagine", {"prompt": typed}, user=user), files=4)
    assert [image.size for image in drafts.images()] == [size_for_aspect("16:9", DRAFT_SIZE)] * 4
    job = await bot.finished_job_for(drafts)
    assert (job["status"], job["prompt"], job["seed"], job["negative_prompt"]) == (
        "done", "a (fox:1.3) in snow", 5, "trees")
    assert (job["params"]["aspect"], job["params"]["chaos"]) == ("16:9", 40)
    assert drafts.images()[0].info["parameters"].startswith("a (fox:1.3) in snow\nNegative prompt: trees")

    # 🔁 repeats what was typed, with new seeds.
    reroll = await result_of(await bot.fake.click(drafts, f"job:{job['id']}:reroll", user), files=4)
    again = await bot.finished_job_for(reroll)
    assert (again["prompt"], again["negative_prompt"]) == ("a (fox:1.3) in snow", "trees")
    assert again["parent_id"] == job["id"]
    assert (again["params"]["aspect"], again["params"]["chaos"]) == ("16:9", 40) and again["seed"] != 5
    assert [image.size for image in reroll.images()] == [size_for_aspect("16:9", DRAFT_SIZE)] * 4


async def test_a_permutation_makes_two_messages(bot: RunningBot) -> None:
    user = new_user(bot.fake, "permuter")
    interaction = await bot.fake.slash("imagine", {"prompt": "a {red, blue} kite --seed 8"}, user=user)
    messages = await interaction.wait_messages(
        lambda found: sum(len(m.attachments) == 4 for m in found) == 2, RESULT_TIMEOUT * 2
    )
    results = [m for m in messages if len(m.attachments) == 4]
    prompts = sorted([(await bot.finished_job_for(m))["prompt"] for m in results])
    assert prompts == ["a blue kite", "a red kite"]


async def test_a_tiled_final_and_its_preview(bot: RunningBot) -> None:
    user = new_user(bot.fake, "tiler")
    interaction = await bot.fake.slash("final", {"prompt": "mossy stones --tile --seed 3"}, user=user)
    final = await result_of(interaction, files=1)
    job = await bot.finished_job_for(final)
    assert job["status"] == "done" and job["params"]["tile"] is True
    [image] = final.images()
    click = await bot.fake.click(final, f"tile:{job['id']}", user=user)
    answer = await bot.fake.wait_for(
        lambda: click.original if click.original and click.original.attachments else None, timeout=RESULT_TIMEOUT
    )
    [preview] = answer.images()
    assert answer.ephemeral and preview.size == (image.width * 2, image.height * 2)
    assert preview.crop((image.width, image.height, image.width * 2, image.height * 2)).convert("RGB").tobytes() == (
        image.convert("RGB").tobytes()
    )


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
