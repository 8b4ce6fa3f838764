"""Prompt craft through the real cogs on the loopback Discord: parameters in the text, permutations as
messages of their own, the tiled preview of a --tile result, /help."""

from __future__ import annotations

import io

from PIL import Image

from tests.cogs.support import FLAG_EPHEMERAL, imagine


async def test_parameters_in_the_slash_prompt_and_a_named_refusal(loopback):
    env = loopback
    drafts = await imagine(env, "a fox --ar 16:9 --seed 5 --no trees")
    job = await env.job_of(drafts)
    assert (job.prompt, job.seed, job.negative_prompt, job.width, job.height) == ("a fox", 5, "trees", 704, 384)

    refused = await env.fake.slash("imagine", {"prompt": "a fox --zoom 2"})
    await env.fake.wait_for(lambda: refused.callback_type is not None, what="the refusal")
    assert refused.callback_data["flags"] & FLAG_EPHEMERAL and "--zoom" in refused.callback_data["content"]


async def test_a_permutation_answers_with_one_message_per_job(loopback):
    fake = loopback.fake
    interaction = await fake.slash("imagine", {"prompt": "a {red, blue} car --seed 3"})

    def results():
        shown = [m for m in [interaction.original, *interaction.followups] if m and len(m.attachments) == 4]
        return shown if len(shown) == 2 else None

    messages = await fake.wait_for(results, what="two results")
    assert len(interaction.followups) == 1  # the second job's message is a follow-up of its own
    jobs = [await loopback.job_of(m) for m in messages]
    assert sorted(j.prompt for j in jobs) == ["a blue car", "a red car"]
    assert len({m.id for m in messages}) == 2 and not any(m.ephemeral for m in messages)


async def test_image_channel_prompts_take_parameters_too(loopback):
    fake = loopback.fake
    world = fake.world
    setting = await fake.slash("settings channels add", {"channel": world.general}, user=world.moderator)
    await fake.wait_for(lambda: setting.callback_type is not None)
    prompt = await fake.say(world.general, "a castle --ar 9:16 --seed 12", user=world.alice)
    result = await fake.wait_for_message(lambda m: m.reply_to == prompt.id and len(m.attachments) == 4)
    job = await loopback.job_of(result)
    assert (job.prompt, job.seed, job.width, job.height) == ("a castle", 12, 384, 704)


async def test_a_tiled_final_offers_a_private_2x2_preview(loopback):
    fake = loopback.fake
    interaction = await fake.slash("final", {"prompt": "stone wall --tile"})
    final = await fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None
    )
    job = await loopback.job_of(final)
    assert job.params.tile is True
    assert final.find_component(f"tile:{job.id}") is not None
    plain = await imagine(loopback, "no tiles here")
    assert plain.find_component(f"tile:{(await loopback.job_of(plain)).id}") is None

    click = await fake.click(final, f"tile:{job.id}", user=fake.world.bob)
    # Discord: the first follow-up after the (ephemeral) defer takes the "thinking…" message's place.
    answer = await fake.wait_for(lambda: click.original if click.original and click.original.attachments else None)
    assert answer.ephemeral and [a.filename for a in answer.attachments] == ["tiled_preview.png"]
    with Image.open(io.BytesIO(final.attachments[0].data)) as image, Image.open(
        io.BytesIO(answer.attachments[0].data)
    ) as preview:
        assert preview.size == (image.width * 2, image.height * 2)


async def test_help_lists_the_prompt_parameters(loopback):
    fake = loopback.fake
    interaction = await fake.slash("help")
    await fake.wait_for(lambda: interaction.callback_type is not None, what="the help")
    assert interaction.callback_data["flags"] & FLAG_EPHEMERAL
    [embed] = interaction.callback_data["embeds"]
    assert "`/imagine`" in embed["description"] and "`/help`" in embed["description"]
    text = " ".join(field["value"] for field in embed["fields"])
    for parameter in ("--ar", "--seed", "--no", "--steps", "--chaos", "--tile", "--style", "--model", "{a, b}"):
        assert parameter in text
