"""/imagine end to end: the defer beats Discord's 3 s even while the engine is busy, the drafts are real
PNGs of the right size, and the job is in the database with its seeds and message id."""

from __future__ import annotations

import pytest
from PIL import Image

from engine.api import size_for_aspect
from tests.e2e.support import BASE_ENV, RunningBot, new_user, result_of
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DRAFT_SIDE = 512  # BotSettings.draft_size default
FINAL_SIDE = 1024


# A final long enough (4 steps at 1024 px) to still be running while another user's /imagine comes in.
# Photo-sized images (engine.detail): the PNGs are as large as real ones all the way to Discord.
BOT_ENV = {**BASE_ENV, "FINAL_STEPS": "4", "ENGINE_TINY_DETAIL": "photo"}


def assert_pngs(message, size: tuple[int, int], count: int) -> list[Image.Image]:
    assert len(message.attachments) == count, [a.filename for a in message.attachments]
    images = message.images()
    for attachment, image in zip(message.attachments, images, strict=True):
        assert attachment.filename.endswith(".png"), attachment.filename
        assert image.format == "PNG", (attachment.filename, image.format)
        assert image.size == size, (attachment.filename, image.size)
        # Real SDXL PNGs: 0.3-0.5 MB at 512x512, 1.2-2.5 MB at 1024x1024 (other sizes in proportion).
        assert attachment.size >= 1.15 * size[0] * size[1], (attachment.filename, attachment.size)
    return images


async def test_imagine_defers_within_3s_while_the_engine_is_busy(bot: RunningBot) -> None:
    fake = bot.fake
    painter, sketcher = new_user(fake, "painter"), new_user(fake, "sketcher")

    final = await fake.slash("final", {"prompt": "a lighthouse in a storm", "seed": 99}, user=painter)
    assert await final.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    await fake.wait_for(
        lambda: bot.jobs("user_id = ? AND status = 'running'", (int(painter.id),)),
        30,
        "the final to be running in the engine",
    )

    drafts = await fake.slash("imagine", {"prompt": "a red fox in the snow", "seed": 1000}, user=sketcher)
    assert await drafts.wait_callback(timeout=3.0) == DEFERRED_CHANNEL_MESSAGE
    assert drafts.callback_delay is not None and drafts.callback_delay < 3.0, drafts.callback_delay
    busy = final.original
    assert busy is not None and not busy.attachments, "the engine was not busy with the final any more"

    message = await result_of(drafts, files=4)
    assert_pngs(message, (DRAFT_SIDE, DRAFT_SIDE), 4)
    assert not message.ephemeral and message.channel_id == fake.world.general.id
    assert "a red fox in the snow" in message.content

    job = await bot.finished_job_for(message)
    assert job["user_id"] == int(sketcher.id)
    assert job["kind"] == "draft" and job["status"] == "done"
    assert job["prompt"] == "a red fox in the snow"
    assert job["channel_id"] == int(fake.world.general.id) and job["guild_id"] == int(fake.world.guild.id)
    assert job["seed"] == 1000 and job["seeds"] == [1000, 1001, 1002, 1003]
    assert job["result_message_id"] == int(message.id)
    assert (job["width"], job["height"]) == (DRAFT_SIDE, DRAFT_SIDE)

    finished = await result_of(final, files=1)
    [image] = assert_pngs(finished, (FINAL_SIDE, FINAL_SIDE), 1)
    parameters = image.info.get("parameters", "")
    assert "a lighthouse in a storm" in parameters and "Seed: 99" in parameters, parameters
    assert "a lighthouse in a storm" in finished.content and "99" in finished.content
    final_job = await bot.finished_job_for(finished)
    assert final_job["user_id"] == int(painter.id)
    assert final_job["kind"] == "final" and final_job["status"] == "done" and final_job["seeds"] == [99]
    assert final_job["result_message_id"] == int(finished.id)


async def test_imagine_with_an_aspect_and_a_seed(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "wide")
    interaction = await fake.slash("imagine", {"prompt": "a wide valley", "aspect": "16:9", "seed": 4242}, user=user)
    assert await interaction.wait_callback(timeout=3.0) == DEFERRED_CHANNEL_MESSAGE
    message = await result_of(interaction, files=4)
    width, height = size_for_aspect("16:9", DRAFT_SIDE)
    assert width > height
    assert_pngs(message, (width, height), 4)
    assert "4242" in message.content
    job = await bot.finished_job_for(message)
    assert [row["id"] for row in bot.jobs("user_id = ?", (int(user.id),))] == [job["id"]]
    assert job["seeds"] == [4242, 4243, 4244, 4245] and (job["width"], job["height"]) == (width, height)
    assert job["result_message_id"] == int(message.id) and job["status"] == "done"
    # The bot shows people they can reroll with a reaction.
    await fake.wait_for(lambda: fake.bot_user.id in message.reactions.get("🔁", []), 10, "the bot's 🔁 reaction")
    assert {f"job:{job['id']}:u2", f"job:{job['id']}:reroll"} <= set(message.custom_ids())
