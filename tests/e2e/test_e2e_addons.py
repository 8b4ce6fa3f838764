"""The model add-ons end to end on the tiny preset (its tiny LoRAs and captioner): /imagine with a LoRA, and
/describe with a button that makes drafts of a suggestion."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.e2e.support import RunningBot, new_user, result_of
from tests.fakediscord import Upload

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((160, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_imagine_with_a_lora_makes_drafts_that_record_it(bot: RunningBot) -> None:
    user = new_user(bot.fake, "stylist")
    choices = await bot.fake.autocomplete("imagine", {"prompt": "a lighthouse", "lora": "ink"}, "lora", user=user)
    await choices.wait_callback()
    assert [choice["value"] for choice in choices.callback_data["choices"]] == ["tiny-ink"]
    interaction = await bot.fake.slash(
        "imagine", {"prompt": "a lighthouse", "lora": "tiny-ink", "lora_weight": 0.8, "seed": 5}, user=user
    )
    drafts = await result_of(interaction, files=4)
    assert [image.size for image in drafts.images()] == [(512, 512)] * 4
    assert "Lora: tiny-ink:0.8" in Image.open(io.BytesIO(drafts.attachments[0].data)).info["parameters"]
    job = await bot.finished_job_for(drafts)
    assert (job["status"], job["params"]["loras"]) == ("done", [["tiny-ink", 0.8]])


async def test_describe_suggests_prompts_and_a_button_makes_drafts_of_one(bot: RunningBot) -> None:
    user = new_user(bot.fake, "describer")
    interaction = await bot.fake.slash(
        "describe", {"image": Upload("photo.png", photo(), content_type="image/png")}, user=user
    )
    [answer] = await interaction.wait_messages(lambda found: any(m.components for m in found), timeout=60)
    numbered = [line for line in answer.content.splitlines() if line[:1].isdigit()]
    assert 3 <= len(numbered) <= 4 and numbered[0].startswith("1. ")
    assert answer.custom_ids() == [f"describe:{n}" for n in range(1, len(numbered) + 1)]
    click = await bot.fake.click(answer, "describe:1", user=user)
    drafts = await result_of(click, files=4)
    job = await bot.finished_job_for(drafts)
    assert job["mode"] == "imagine" and job["prompt"] == numbered[0].removeprefix("1. ").replace("\\", "")
