"""Job buttons act only from the message their job was posted in (as reactions already do), and every
component keeps working after a restart: the custom id carries all the state."""

from __future__ import annotations

from tests.cogs.support import FLAG_EPHEMERAL, imagine


async def test_a_button_naming_another_job_than_its_message_is_refused(loopback):
    env = loopback
    fake = env.fake
    first = await imagine(env, "a first harbour")
    second = await imagine(env, "a second harbour")
    first_job, second_job = await env.job_of(first), await env.job_of(second)
    # The first message's U2 button, its custom id rewritten to name the second job (a forged click).
    button = first.find_component(f"job:{first_job.id}:u2")
    button["custom_id"] = f"job:{second_job.id}:u2"
    jobs_before = (await env.store.history(user_id=int(fake.world.alice.id)))[1]

    click = await fake.click(first, f"job:{second_job.id}:u2", user=fake.world.bob)
    await fake.wait_for(lambda: click.callback_type is not None, what="the answer")
    assert click.callback_type == 4 and click.callback_data["flags"] & FLAG_EPHEMERAL
    assert f"not on the result of job #{second_job.id}" in click.callback_data["content"]
    assert (await env.store.history(user_id=int(fake.world.alice.id)))[1] == jobs_before
    assert (await env.store.history(user_id=int(fake.world.bob.id)))[1] == 0

    honest = await fake.click(second, f"job:{second_job.id}:u2", user=fake.world.bob)
    final = await fake.wait_for(lambda: honest.original if honest.original and honest.original.attachments else None)
    assert (await env.job_of(final)).parent_id == second_job.id


async def test_buttons_and_the_history_menu_posted_before_a_restart_work_after_it(loopback):
    env = loopback
    fake = env.fake
    drafts = await imagine(env, "a harbour before the restart")
    job = await env.job_of(drafts)
    listing = await fake.slash("history")
    await fake.wait_for(lambda: listing.original is not None, what="the history page")

    await env.stop()
    await env.start()  # a new ImagineBot, engine and store on the same database: nothing kept in memory

    u1 = await fake.click(drafts, f"job:{job.id}:u1", user=fake.world.bob)
    final = await fake.wait_for(
        lambda: u1.original if u1.original and u1.original.attachments else None, what="the final"
    )
    assert [a.filename for a in final.attachments] == ["final.png"]
    final_job = await env.job_of(final)
    assert (final_job.kind, final_job.parent_id, final_job.parent_index) == ("final", job.id, 0)

    reroll = await fake.click(drafts, f"job:{job.id}:reroll")
    rerolled = await fake.wait_for(
        lambda: reroll.original if reroll.original and len(reroll.original.attachments) == 4 else None,
        what="the reroll",
    )
    assert (await env.job_of(rerolled)).params.reroll_of == job.id

    pick = await fake.click(listing.original, f"histpost:{fake.world.alice.id}", values=[str(job.id)])
    again = await fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None, what="the re-post"
    )
    assert (await env.job_of(again)).params.repost_of == job.id
