"""Remix and Upscale through real discord.py against the loopback Discord: the Remix button opens a form
with the prompts filled in, its submit makes the edited job (also after a restart), and Upscale (subtle)
posts the final at twice its size."""

from __future__ import annotations

from core.remix import NEGATIVE_INPUT, PROMPT_INPUT
from tests.cogs.support import FLAG_EPHEMERAL, imagine
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE, MODAL


def form_inputs(modal: dict) -> dict[str, dict]:
    """The text inputs of a modal by custom id (in action rows or in labels)."""
    found = {}
    for top in modal["components"]:
        for child in top.get("components") or [top.get("component") or {}]:
            if child.get("type") == 4:
                found[child["custom_id"]] = child
    return found


async def result(fake, interaction, files: int):
    return await fake.wait_for(
        lambda: interaction.original if interaction.original and len(interaction.original.attachments) == files
        else None,
        what="the result",
    )


async def test_remix_opens_a_filled_form_and_its_submit_makes_the_edited_drafts(loopback):
    env = loopback
    fake = env.fake
    drafts = await imagine(env, "a red fox", negative_prompt="blur", seed=21)
    job = await env.job_of(drafts)
    assert f"job:{job.id}:remix" in drafts.custom_ids()

    click = await fake.click(drafts, f"job:{job.id}:remix", user=fake.world.bob)
    assert await click.wait_callback() == MODAL
    modal = click.modal
    assert modal is not None and modal["custom_id"] == f"remix:{job.id}" and len(modal["title"]) <= 45
    inputs = form_inputs(modal)
    assert inputs[PROMPT_INPUT]["value"] == "a red fox" and inputs[NEGATIVE_INPUT]["value"] == "blur"
    assert all(i["max_length"] <= 4000 and len(i["label"]) <= 45 for i in inputs.values())

    submit = await fake.submit_modal(click, {PROMPT_INPUT: "a red fox in the snow", NEGATIVE_INPUT: "blur"})
    assert await submit.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    remixed = await result(fake, submit, 4)
    row = await env.job_of(remixed)
    assert (row.kind, row.mode, row.prompt, row.negative_prompt) == ("draft", "remix", "a red fox in the snow", "blur")
    assert (row.seed, row.width, row.height, row.parent_id, row.user_id) == (
        21, job.width, job.height, job.id, int(fake.world.bob.id)
    )
    assert row.seeds == job.seeds and f"remix of job #{job.id}" in remixed.content


async def test_a_form_opened_before_a_restart_is_submitted_after_it(loopback):
    env = loopback
    fake = env.fake
    drafts = await imagine(env, "a lighthouse", seed=5)
    job = await env.job_of(drafts)
    click = await fake.click(drafts, f"job:{job.id}:remix")
    assert await click.wait_callback() == MODAL

    await env.stop()
    await env.start()  # nothing of the form is kept in memory: its custom id names the job

    submit = await fake.submit_modal(click, {PROMPT_INPUT: "a lighthouse in a storm"})
    remixed = await result(fake, submit, 4)
    row = await env.job_of(remixed)
    assert (row.prompt, row.negative_prompt, row.seed, row.parent_id) == ("a lighthouse in a storm", "", 5, job.id)


async def test_a_form_naming_a_job_that_is_gone_or_a_refused_prompt_gets_an_ephemeral_answer(loopback):
    env = loopback
    fake = env.fake
    await env.bot.jobs.guilds.update(int(fake.world.guild.id), blocked_words=("gore",))
    drafts = await imagine(env, "a harbour")
    job = await env.job_of(drafts)
    jobs_before = (await env.store.history(user_id=int(fake.world.alice.id)))[1]

    click = await fake.click(drafts, f"job:{job.id}:remix")
    assert await click.wait_callback() == MODAL
    blocked = await fake.submit_modal(click, {PROMPT_INPUT: "a harbour full of gore"})
    assert await blocked.wait_callback() == 4 and blocked.callback_data["flags"] & FLAG_EPHEMERAL
    assert "“gore”" in blocked.callback_data["content"]

    click = await fake.click(drafts, f"job:{job.id}:remix")
    assert await click.wait_callback() == MODAL
    click.modal["custom_id"] = "remix:424242"  # a form naming a job that no longer exists
    gone = await fake.submit_modal(click, {PROMPT_INPUT: "a harbour at dawn"})
    assert await gone.wait_callback() == 4 and gone.callback_data["flags"] & FLAG_EPHEMERAL
    assert "There is no job #424242" in gone.callback_data["content"]
    assert (await env.store.history(user_id=int(fake.world.alice.id)))[1] == jobs_before


async def test_upscale_subtle_posts_the_final_at_twice_its_size_and_reroll_repeats_it(loopback):
    env = loopback
    fake = env.fake
    command = await fake.slash("final", {"prompt": "a harbour at noon", "seed": 7})
    final = await result(fake, command, 1)
    final_job = await env.job_of(final)
    assert f"job:{final_job.id}:upscale_creative" in final.custom_ids()

    click = await fake.click(final, f"job:{final_job.id}:upscale_subtle", user=fake.world.bob)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    upscaled = await result(fake, click, 1)
    [image] = upscaled.images()
    assert image.size == (2 * final_job.width, 2 * final_job.height)
    row = await env.job_of(upscaled)
    assert (row.kind, row.mode, row.parent_id, row.params.upscale) == ("final", "upscale2x", final_job.id, "subtle")
    assert f"job:{row.id}:upscale_subtle" not in upscaled.custom_ids()

    reroll = await fake.click(upscaled, f"job:{row.id}:reroll")
    again = await result(fake, reroll, 1)
    assert again.images()[0].size == image.size
    assert (await env.job_of(again)).params.upscale == "subtle"
