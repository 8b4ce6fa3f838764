"""Who may remake what, through real discord.py against the loopback Discord (#21 items 6 and 8): a job that
started from a member's upload is remade (🔁, Remix, U, V) only by its author or a moderator, and a Remix
form counts only when it was opened from its job's own result, as that job's buttons do."""

from __future__ import annotations

import asyncio

from core.remix import PROMPT_INPUT
from tests.cogs.support import FLAG_EPHEMERAL, imagine
from tests.core.doubles import png
from tests.fakediscord import Upload
from tests.fakediscord.records import MODAL

UPLOADED = "started from an image its author uploaded; only they and moderators can make it again"


async def test_another_members_upload_is_remade_by_its_author_and_moderators_only(loopback):
    env = loopback
    fake, world = env.fake, env.fake.world
    photo = Upload("room.png", png(640, 480, (9, 90, 200)), content_type="image/png")
    drafts = await imagine(env, "my living room, repainted", image=photo)
    job = await env.job_of(drafts)
    assert job.params.init_image and job.user_id == int(world.alice.id)

    for action in ("reroll", "remix", "u1", "v2"):
        click = await fake.click(drafts, f"job:{job.id}:{action}", user=world.bob)
        await fake.wait_for(lambda c=click: c.callback_type is not None, what="the answer")
        assert click.callback_type == 4 and click.callback_data["flags"] & FLAG_EPHEMERAL, action
        assert f"Job #{job.id} {UPLOADED}" in click.callback_data["content"], action
    before = len(fake.bot_messages(world.general))
    await fake.react(drafts, "🔁", user=world.bob)
    await fake.react(drafts, "1️⃣", user=world.bob)
    await asyncio.sleep(0.3)
    assert (await env.store.history(user_id=int(world.bob.id)))[1] == 0
    assert not [m for m in fake.bot_messages(world.general)[before:] if m.attachments]

    by_moderator = await fake.click(drafts, f"job:{job.id}:v2", user=world.moderator)
    await fake.wait_for(lambda: by_moderator.original and len(by_moderator.original.attachments) == 4)
    await fake.react(drafts, "🔁", user=world.alice)
    await fake.wait_for_message(lambda m: m.reply_to == drafts.id and len(m.attachments) == 4)
    assert (await env.store.history(user_id=int(world.moderator.id)))[1] == 1


async def test_a_remix_form_counts_only_from_its_jobs_own_result(loopback):
    env = loopback
    fake, world = env.fake, env.fake.world
    first = await imagine(env, "a first harbour")
    second = await imagine(env, "a second harbour")
    first_job, second_job = await env.job_of(first), await env.job_of(second)

    click = await fake.click(first, f"job:{first_job.id}:remix", user=world.bob)
    assert await click.wait_callback() == MODAL
    click.modal["custom_id"] = f"remix:{second_job.id}"  # a forged form: the first message, the second job
    forged = await fake.submit_modal(click, {PROMPT_INPUT: "a harbour on fire"})
    assert await forged.wait_callback() == 4 and forged.callback_data["flags"] & FLAG_EPHEMERAL
    assert f"not opened from the result of job #{second_job.id}" in forged.callback_data["content"]
    assert (await env.store.history(user_id=int(world.bob.id)))[1] == 0

    click = await fake.click(second, f"job:{second_job.id}:remix", user=world.bob)
    assert await click.wait_callback() == MODAL
    honest = await fake.submit_modal(click, {PROMPT_INPUT: "a second harbour at dusk"})
    remixed = await fake.wait_for(lambda: honest.original if honest.original and honest.original.attachments else None)
    assert (await env.job_of(remixed)).parent_id == second_job.id
