"""Moderator powers through real discord.py: server-level Manage Messages, and only where the caller can see.

A member with Manage Messages in one channel only is no moderator; a server moderator acts on
another member's jobs only in channels they can see, and /history of another member lists only those.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.cogs.support import FLAG_EPHEMERAL, Harness, running_harness
from tests.fakediscord import FakeDiscord
from tests.fakediscord.entities import GUILD_TEXT, FakeChannel, Overwrite
from tests.fakediscord.permissions import MANAGE_MESSAGES, VIEW_CHANNEL
from tests.fakediscord.snowflake import SnowflakeFactory
from tests.fakediscord.world import World


def scoped_world() -> World:
    """The default world plus #staff (only alice, the bot and the owner see it) and a channel-only moderator."""
    world = World.default(SnowflakeFactory())
    guild = world.guild
    staff = FakeChannel(
        world.ids.next(),
        GUILD_TEXT,
        "staff",
        guild.id,
        position=3,
        overwrites=[
            Overwrite(guild.id, 0, deny=VIEW_CHANNEL),
            Overwrite(world.alice.id, 1, allow=VIEW_CHANNEL),
            Overwrite(world.bot.id, 1, allow=VIEW_CHANNEL),
        ],
    )
    guild.channels.append(staff)
    world.channels[staff.id] = staff
    helper = world.add_user("helper", guild=guild)  # Manage Messages in #general only
    world.general.overwrites.append(Overwrite(helper.id, 1, allow=MANAGE_MESSAGES))
    return world


@pytest.fixture
async def scoped(tmp_path, caplog):
    async with running_harness(tmp_path, caplog, scoped_world()) as harness:
        yield harness


def staff(world: World) -> FakeChannel:
    return world.guild.channel_named("staff")


def helper(world: World):
    return next(user for user in world.users.values() if user.username == "helper")


async def answer(fake: FakeDiscord, name: str, options: dict, user, channel=None) -> str:
    interaction = await fake.slash(name, options, user=user, channel=channel)
    await fake.wait_for(lambda: interaction.callback_type is not None, what=f"/{name}'s answer")
    assert interaction.callback_type == 4 and interaction.callback_data["flags"] & FLAG_EPHEMERAL
    return interaction.callback_data["content"]


async def queued_job(env: Harness, prompt: str, channel):
    interaction = await env.fake.slash("imagine", {"prompt": prompt}, channel=channel)
    await env.fake.wait_for(lambda: interaction.callback_type == 5, what="the defer")
    jobs, _ = await env.store.history(user_id=int(env.fake.world.alice.id), search=prompt)
    return jobs[0]


async def test_history_of_another_member_lists_only_channels_the_moderator_can_see(scoped):
    fake, world = scoped.fake, scoped.fake.world
    scoped.engine.paused = True
    await queued_job(scoped, "a secret garden", staff(world))
    await queued_job(scoped, "a public park", world.general)
    listing = await answer(fake, "history", {"user": world.alice}, world.moderator)
    assert "public park" in listing and "secret garden" not in listing
    assert "1 job" in listing
    mine = await answer(fake, "history", {}, world.alice)
    assert "public park" in mine and "secret garden" in mine


async def test_channel_manage_messages_is_not_moderation(scoped):
    fake, world = scoped.fake, scoped.fake.world
    scoped.engine.paused = True
    job = await queued_job(scoped, "a quiet lake", world.general)
    listing = await answer(fake, "history", {"user": world.alice}, helper(world))
    assert "Only moderators" in listing and "quiet lake" not in listing
    shown = await answer(fake, "show", {"job": job.id}, helper(world))
    assert "belongs to someone else" in shown
    cancelled = await answer(fake, "cancel", {"job": job.id}, helper(world))
    assert "not yours" in cancelled
    assert (await scoped.store.get_job(job.id)).status == "queued"


async def test_moderators_act_only_on_jobs_of_channels_they_can_see(scoped):
    fake, world = scoped.fake, scoped.fake.world
    scoped.engine.paused = True
    hidden = await queued_job(scoped, "a hidden cave", staff(world))
    shown = await answer(fake, "show", {"job": hidden.id}, world.moderator)
    assert "belongs to someone else" in shown and "hidden cave" not in shown
    cancelled = await answer(fake, "cancel", {"job": hidden.id}, world.moderator)
    assert "not yours" in cancelled
    assert (await scoped.store.get_job(hidden.id)).status == "queued"

    public = await queued_job(scoped, "an open field", world.general)
    assert (await answer(fake, "cancel", {"job": public.id}, world.moderator)).startswith("Cancelled job #")
    scoped.engine.paused = False


async def test_cross_reaction_deletes_for_a_server_moderator_only(scoped):
    fake, world = scoped.fake, scoped.fake.world
    interaction = await fake.slash("imagine", {"prompt": "a lonely tree"})
    result = await fake.wait_for(
        lambda: interaction.original if interaction.original and len(interaction.original.attachments) == 4 else None
    )
    await scoped.job_of(result)
    await fake.react(result, "❌", user=helper(world))  # Manage Messages in this channel only: refused
    await asyncio.sleep(0.3)
    assert not fake.message(result.id).deleted
    await fake.react(result, "❌", user=world.moderator)
    await fake.wait_for(lambda: fake.message(result.id).deleted, what="the deletion")
