"""Remix and Upscale end to end on the tiny preset: the edited prompt makes drafts from the same seed, and
Upscale (subtle) on a final arrives at twice its size (Lanczos standing in for the upscaler model), close to
its source when shrunk back; Upscale (creative) redraws it at twice its size too."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageStat

from core.remix import PROMPT_INPUT
from tests.e2e.support import RunningBot, new_user, result_of
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE, MODAL

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_both_upscales_make_the_final_twice_as_large(bot: RunningBot) -> None:
    user = new_user(bot.fake, "enlarger")
    final = await result_of(await bot.fake.slash("final", {"prompt": "a harbour at noon", "seed": 11}, user=user))
    final_job = await bot.finished_job_for(final)
    click = await bot.fake.click(final, f"job:{final_job['id']}:upscale_subtle", user)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    upscaled = await result_of(click, files=1)
    [image] = upscaled.images()
    [source] = final.images()
    assert image.size == (2 * source.width, 2 * source.height)
    shrunk = image.convert("RGB").resize(source.size, Image.Resampling.LANCZOS)
    assert sum(ImageStat.Stat(ImageChops.difference(shrunk, source.convert("RGB"))).mean) / 3 < 12
    job = await bot.finished_job_for(upscaled)
    assert (job["status"], job["kind"], job["mode"]) == ("done", "final", "upscale2x")
    assert job["parent_id"] == final_job["id"]
    assert job["params"]["upscale"] == "subtle" and (job["width"], job["height"]) == image.size

    click = await bot.fake.click(final, f"job:{final_job['id']}:upscale_creative", user)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    redrawn = await result_of(click, files=1)
    [image] = redrawn.images()
    assert image.size == (2 * source.width, 2 * source.height)
    assert "Upscale mode: creative" in image.info["parameters"]
    job = await bot.finished_job_for(redrawn)
    assert (job["status"], job["mode"], job["parent_id"]) == ("done", "upscale2x", final_job["id"])
    assert job["params"]["upscale"] == "creative"


async def test_remix_makes_drafts_of_the_edited_prompt_from_the_same_seed(bot: RunningBot) -> None:
    user = new_user(bot.fake, "remixer")
    drafts = await result_of(await bot.fake.slash("imagine", {"prompt": "a red fox", "seed": 5}, user=user), files=4)
    original = await bot.finished_job_for(drafts)
    click = await bot.fake.click(drafts, f"job:{original['id']}:remix", user)
    assert await click.wait_callback() == MODAL
    submit = await bot.fake.submit_modal(click, {PROMPT_INPUT: "a blue fox"})
    remixed = await result_of(submit, files=4)
    job = await bot.finished_job_for(remixed)
    assert (job["mode"], job["prompt"], job["seed"], job["parent_id"]) == ("remix", "a blue fox", 5, original["id"])
    assert [img.size for img in remixed.images()] == [img.size for img in drafts.images()]
