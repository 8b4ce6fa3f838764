"""The model add-ons through the real bot on the loopback Discord: LoRA autocomplete and picks, the image
reference (an image channel's attached image too), /describe and its buttons (after a restart too), and
options hidden where the engine lacks them."""

from __future__ import annotations

import pytest

from core.attachments import normalize_image
from core.jobs.addons import NO_REFERENCE
from tests.cogs.support import FLAG_EPHEMERAL, imagine, running_harness
from tests.core.doubles import FAKE_SUGGESTIONS, plain_offer, png
from tests.fakediscord import CommandUnavailable, Upload

ADDON_OPTIONS = {"lora", "lora_weight", "lora2", "lora2_weight", "reference", "reference_weight", "reference_mode"}


def synced_options(env, name: str) -> set[str]:
    [command] = [c for commands in env.fake.commands.values() for c in commands if c["name"] == name]
    return {option["name"] for option in command.get("options") or []}


async def choices_for(env, typed: str, command: str = "imagine", focused: str = "lora") -> list[str]:
    interaction = await env.fake.autocomplete(command, {"prompt": "a fox", focused: typed}, focused)
    await env.fake.wait_for(lambda: interaction.callback_type is not None, what="the choices")
    return [choice["value"] for choice in interaction.callback_data["choices"]]


async def test_lora_autocomplete_filters_the_engines_names_as_the_member_types(loopback):
    env = loopback
    assert await choices_for(env, "") == ["tiny-ink", "tiny-glow", "watercolor-xl", "ink-wash"]
    assert await choices_for(env, "INK") == ["ink-wash", "tiny-ink"]  # names that start with it come first
    assert await choices_for(env, "glow", focused="lora2") == ["tiny-glow"]
    assert await choices_for(env, "zzz", command="final") == []


async def test_many_loras_are_cut_to_the_25_discord_shows(tmp_path, caplog):
    offer = plain_offer(loras=tuple(f"style-{n:02d}" for n in range(40)))
    async with running_harness(tmp_path, caplog, offer=offer) as env:
        shown = await choices_for(env, "style")
        assert shown == [f"style-{n:02d}" for n in range(25)]
        assert await choices_for(env, "style-3") == [f"style-{n}" for n in range(30, 40)]


async def test_imagine_with_a_lora_and_a_reference_records_them_and_u_and_reroll_repeat_them(loopback):
    env = loopback
    reference = Upload("look.png", png(160, 120, (10, 60, 200)), content_type="image/png")
    drafts = await imagine(
        env, "a lighthouse", lora="tiny-ink", lora_weight=0.7, lora2="ink-wash", reference=reference,
        reference_mode="style",
    )
    job = await env.job_of(drafts)
    assert job.params.loras == (("tiny-ink", 0.7), ("ink-wash", 1.0))
    assert (job.params.reference_mode, job.params.reference_weight) == ("style", 0.5) and job.params.reference_image
    assert "LoRA tiny-ink 0.7 · LoRA ink-wash 1 · Reference (style) 0.5" in drafts.content
    request = env.engine.item(job.id).request
    assert request.loras == job.params.loras and request.reference is not None and request.reference_mode == "style"

    await env.stop()
    await env.start()  # the buttons rebuild the request from the row and the stored reference

    u1 = await env.fake.click(drafts, f"job:{job.id}:u1")
    final = await env.fake.wait_for(lambda: u1.original if u1.original and u1.original.attachments
                                    else None, what="the final")
    final_job = await env.job_of(final)
    final_request = env.engine.item(final_job.id).request
    assert final_request.loras == job.params.loras and final_request.reference == request.reference
    assert final_job.params.loras == job.params.loras and "LoRA tiny-ink 0.7" in final.content

    reroll = await env.fake.click(drafts, f"job:{job.id}:reroll")
    rerolled = await env.fake.wait_for(
        lambda: reroll.original if reroll.original and len(reroll.original.attachments) == 4 else None,
        what="the reroll",
    )
    again = env.engine.item((await env.job_of(rerolled)).id).request
    assert (again.loras, again.reference, again.reference_mode) == (request.loras, request.reference, "style")


async def test_an_unknown_lora_is_an_ephemeral_error_naming_it(loopback):
    env = loopback
    interaction = await env.fake.slash("imagine", {"prompt": "a fox", "lora": "made-up"})
    await env.fake.wait_for(lambda: interaction.callback_type is not None, what="the answer")
    assert interaction.callback_type == 4 and interaction.callback_data["flags"] & FLAG_EPHEMERAL
    expected = "There is no LoRA “made-up” on this bot: pick one of the list in lora."
    assert interaction.callback_data["content"] == expected
    assert env.engine.submitted == []


async def image_channel(env):
    world = env.fake.world
    setting = await env.fake.slash("settings channels add", {"channel": world.general}, user=world.moderator)
    await env.fake.wait_for(lambda: setting.callback_type is not None, what="the setting")
    return world.general


async def test_an_image_channel_prompt_borrows_its_attached_image_and_takes_typed_addons(loopback):
    env = loopback
    channel = await image_channel(env)
    look = png(160, 120, (10, 60, 200))
    prompt = await env.fake.say(channel, "a lighthouse --lora tiny-ink:0.7 --iw 1.2 --sref",
                                attachments=[Upload("look.png", look, content_type="image/png")])
    result = await env.fake.wait_for_message(lambda m: m.reply_to == prompt.id and len(m.attachments) == 4)
    job = await env.job_of(result)
    assert (job.prompt, job.params.loras) == ("a lighthouse", (("tiny-ink", 0.7),))
    assert (job.params.reference_weight, job.params.reference_mode) == (1.2, "style") and job.params.reference_image
    assert env.engine.item(job.id).request.reference == normalize_image(look)

    notes = Upload("notes.txt", b"hi", content_type="text/plain")
    bad = await env.fake.say(channel, "a lighthouse", attachments=[notes])
    refusal = await env.fake.wait_for_message(lambda m: m.reply_to == bad.id)
    assert "“notes.txt” is not an image (text/plain)" in refusal.content and not refusal.attachments
    assert len(env.engine.submitted) == 1


async def test_an_image_channel_without_a_reference_model_says_so_instead_of_ignoring_the_image(tmp_path, caplog):
    async with running_harness(tmp_path, caplog, offer=plain_offer()) as env:
        channel = await image_channel(env)
        prompt = await env.fake.say(channel, "a lighthouse", attachments=[Upload("look.png", png(100, 100))])
        refusal = await env.fake.wait_for_message(lambda m: m.reply_to == prompt.id)
        assert NO_REFERENCE in refusal.content and "without the image" in refusal.content
        plain = await env.fake.say(channel, "a lighthouse")
        await env.fake.wait_for_message(lambda m: m.reply_to == plain.id and len(m.attachments) == 4)
        alone = await env.fake.say(channel, "", attachments=[Upload("look.png", png(100, 100))])
        answer = await env.fake.wait_for_message(lambda m: m.reply_to == alone.id)
        assert "Images alone" in answer.content and "reference" not in answer.content  # none to promise
        assert len(env.engine.submitted) == 1


async def test_describe_answers_with_numbered_suggestions_whose_buttons_work_after_a_restart(loopback):
    env = loopback
    upload = Upload("photo.png", png(200, 150), content_type="image/png")
    interaction = await env.fake.slash("describe", {"image": upload})
    answer = await env.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.components else None,
        what="the suggestions",
    )
    lines = answer.content.splitlines()
    assert lines[1:5] == [f"{n}. {text}" for n, text in enumerate(FAKE_SUGGESTIONS, start=1)]
    assert answer.custom_ids() == ["describe:1", "describe:2", "describe:3", "describe:4"]

    await env.stop()
    await env.start()

    click = await env.fake.click(answer, "describe:2", user=env.fake.world.bob)
    drafts = await env.fake.wait_for(
        lambda: click.original if click.original and len(click.original.attachments) == 4 else None, what="the drafts"
    )
    job = await env.job_of(drafts)
    assert (job.prompt, job.user_id, job.mode) == (FAKE_SUGGESTIONS[1], int(env.fake.world.bob.id), "imagine")


@pytest.mark.parametrize("command", ["imagine", "final"])
async def test_without_addons_their_options_and_describe_are_not_registered(tmp_path, caplog, command):
    async with running_harness(tmp_path, caplog, offer=plain_offer()) as env:
        options = synced_options(env, command)
        assert "prompt" in options and not options & ADDON_OPTIONS
        with pytest.raises(CommandUnavailable):
            await env.fake.slash("describe", {"image": Upload("a.png", png(100, 100), content_type="image/png")})
        with pytest.raises(ValueError, match="unknown option"):
            await env.fake.slash(command, {"prompt": "a fox", "lora": "tiny-ink"})
