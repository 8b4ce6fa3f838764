"""The model add-ons end to end on the tiny preset (its tiny LoRAs, IP-Adapter and captioner): /imagine with a
LoRA, /imagine with an image reference and its reroll, an image channel's prompt with --lora and an attached
reference, and /describe with a button that makes drafts of a suggestion."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.e2e.support import RunningBot, new_user, reply_with_files, result_of
from tests.fakediscord import Upload

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


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


def parameters_of(message) -> str:
    return Image.open(io.BytesIO(message.attachments[0].data)).info["parameters"]


async def test_imagine_with_a_reference_records_it_and_a_reroll_repeats_it(bot: RunningBot) -> None:
    user = new_user(bot.fake, "borrower")
    look = Upload("look.png", photo(), content_type="image/png")
    interaction = await bot.fake.slash(
        "imagine", {"prompt": "a lighthouse --sref", "reference": look, "reference_weight": 1.2, "seed": 3}, user=user
    )
    drafts = await result_of(interaction, files=4)
    assert [image.size for image in drafts.images()] == [(512, 512)] * 4
    assert "IP-Adapter: style 1.2" in parameters_of(drafts)
    job = await bot.finished_job_for(drafts)
    borrowed = {key: job["params"].get(key) for key in ("reference_image", "reference_weight", "reference_mode")}
    assert (job["prompt"], borrowed["reference_weight"], borrowed["reference_mode"]) == ("a lighthouse", 1.2, "style")
    assert borrowed["reference_image"], "the row names no stored reference image"

    reroll = await result_of(await bot.fake.click(drafts, f"job:{job['id']}:reroll", user), files=4)
    again = await bot.finished_job_for(reroll)
    assert (again["parent_id"], again["status"]) == (job["id"], "done") and again["seed"] != job["seed"]
    assert {key: again["params"].get(key) for key in borrowed} == borrowed
    assert "IP-Adapter: style 1.2" in parameters_of(reroll)


async def test_an_image_channel_prompt_with_a_lora_and_an_attached_image(bot: RunningBot) -> None:
    fake = bot.fake
    channel = fake.world.general
    added = await fake.slash("settings channels add", {"channel": channel}, user=fake.world.moderator)
    await added.wait_messages(lambda found: len(found) >= 1, 10)
    user = new_user(fake, "channeller")
    prompt = await fake.say(channel, "a cat --lora tiny-ink:0.7", user=user,
                            attachments=[Upload("look.png", photo(), content_type="image/png")])
    drafts = await reply_with_files(fake, prompt, files=4)
    assert len(drafts.images()) == 4
    written = parameters_of(drafts)
    assert "Lora: tiny-ink:0.7" in written and "IP-Adapter: full 0.5" in written
    job = await bot.finished_job_for(drafts)
    assert (job["prompt"], job["user_id"], job["params"]["loras"]) == ("a cat", int(user.id), [["tiny-ink", 0.7]])
    assert job["params"]["reference_image"] and job["params"]["reference_mode"] == "full"


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
