"""Job buttons act only from the message their job was posted in (as reactions already do)."""

from __future__ import annotations

from tests.cogs.test_loopback import FLAG_EPHEMERAL, imagine


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
