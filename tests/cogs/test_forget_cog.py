"""/forget against the loopback Discord: an ephemeral confirmation; Cancel keeps everything, Forget everything
cancels the member's waiting jobs and deletes their rows and preferences, and nobody else's."""

from __future__ import annotations

from tests.cogs.support import FLAG_EPHEMERAL, Harness
from tests.fakediscord import FakeDiscord


async def queued_job(env: Harness, prompt: str, user):
    interaction = await env.fake.slash("imagine", {"prompt": prompt}, user=user)
    await env.fake.wait_for(lambda: interaction.callback_type == 5, what="the defer")
    jobs, _ = await env.store.history(user_id=int(user.id), search=prompt)
    return jobs[0]


async def ask_forget(fake: FakeDiscord, user):
    interaction = await fake.slash("forget", {}, user=user)
    await fake.wait_for(lambda: interaction.original is not None, what="the confirmation")
    assert interaction.callback_type == 4 and interaction.callback_data["flags"] & FLAG_EPHEMERAL
    assert "cannot be undone" in interaction.original.content
    assert set(interaction.original.custom_ids()) == {"forget:yes", "forget:no"}
    return interaction.original


async def test_forget_asks_first_cancel_keeps_everything_confirm_deletes_only_mine(loopback):
    env, fake, world = loopback, loopback.fake, loopback.fake.world
    alice, other = world.alice, world.moderator
    env.engine.paused = True
    mine = await queued_job(env, "a fox that will be forgotten", alice)
    theirs = await queued_job(env, "a heron that stays", other)
    await env.store.update_user_prefs(int(alice.id), aspect="16:9")
    await env.store.update_user_prefs(int(other.id), aspect="2:3")

    ask = await ask_forget(fake, alice)
    await fake.click(ask, "forget:no", user=alice)
    await fake.wait_for(lambda: ask.content == "Nothing was deleted.", what="the cancel")
    assert not ask.custom_ids()
    assert (await env.store.get_job(mine.id)).status == "queued"
    assert (await env.store.user_prefs(int(alice.id))).aspect == "16:9"

    ask = await ask_forget(fake, alice)
    await fake.click(ask, "forget:yes", user=alice)
    await fake.wait_for(lambda: ask.content.startswith("Done"), what="the forgetting")
    assert "1 job" in ask.content and "your preferences" in ask.content and "1 waiting or running" in ask.content
    assert await env.store.history(user_id=int(alice.id)) == ([], 0)
    assert await env.store.get_job(mine.id) is None
    assert (await env.store.user_prefs(int(alice.id))).aspect is None
    assert (await env.store.get_job(theirs.id)).status == "queued"
    assert (await env.store.user_prefs(int(other.id))).aspect == "2:3"
    env.engine.paused = False
