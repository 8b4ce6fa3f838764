"""/settings style and style: on /imagine and /final through real discord.py against the loopback Discord."""

from __future__ import annotations

import pytest

from tests.cogs.support import FLAG_EPHEMERAL, Harness, imagine
from tests.fakediscord import CommandUnavailable

AUTOCOMPLETE_RESULT = 8


async def answer(env: Harness, command: str, options: dict, *, user=None, force: bool = False) -> str:
    interaction = await env.fake.slash(command, options, user=user or env.fake.world.moderator, force=force)
    await env.fake.wait_for(lambda: interaction.callback_type is not None, what=f"/{command}'s answer")
    assert interaction.callback_data["flags"] & FLAG_EPHEMERAL, interaction.callback_data
    return interaction.callback_data["content"]


async def typed(env: Harness, command: str, text: str) -> list[str]:
    """The style names offered while a member types ``text`` into ``style:`` of ``/command``."""
    option = "name" if command.startswith("settings") else "style"
    interaction = await env.fake.autocomplete(command, {option: text}, focused=option)
    assert await interaction.wait_callback() == AUTOCOMPLETE_RESULT
    return [choice["value"] for choice in interaction.callback_data["choices"]]


async def test_an_admin_adds_a_style_and_a_member_draws_with_it(loopback):
    env = loopback
    guild_id = int(env.fake.world.guild.id)
    text = await answer(env, "settings style add", {"name": "Noir", "prompt_suffix": "film noir", "negative": "color"})
    assert "Style `noir` added" in text and "/imagine style:noir" in text
    assert [s.name for s in await env.store.guild_styles(guild_id)] == ["noir"]

    assert await typed(env, "imagine", "NO") == ["noir"]
    assert await typed(env, "final", "art") == ["line-art", "pixel-art"]
    assert len(await typed(env, "imagine", "")) == 9  # the eight defaults and noir

    drafts = await imagine(env, "a detective in the rain", style="noir")
    job = await env.job_of(drafts)
    assert job.prompt == "a detective in the rain, film noir"
    assert (job.negative_prompt, job.params.style) == ("color", "noir")
    assert "Style: noir" in drafts.content


async def test_a_member_without_manage_server_cannot_add_a_style(loopback):
    env = loopback
    alice = env.fake.world.alice
    with pytest.raises(CommandUnavailable, match="lacks the permissions"):
        await env.fake.slash("settings style add", {"name": "noir", "prompt_suffix": "film noir"}, user=alice)
    refusal = await answer(env, "settings style add", {"name": "noir", "prompt_suffix": "x"}, user=alice, force=True)
    assert "Manage Server" in refusal
    assert await env.store.guild_styles(int(env.fake.world.guild.id)) == []


async def test_removed_styles_are_not_offered_and_an_unknown_one_is_refused(loopback):
    env = loopback
    assert "removed" in await answer(env, "settings style remove", {"name": "anime"})
    assert await typed(env, "imagine", "an") == []
    listed = await answer(env, "settings style list", {})
    assert "`watercolor` (bot default)" in listed and "`anime`" not in listed and "(7)" in listed

    refusal = await answer(env, "imagine", {"prompt": "a fox", "style": "anime"}, user=env.fake.world.alice)
    assert "no style “anime”" in refusal and "watercolor" in refusal
    assert (await env.store.history(user_id=int(env.fake.world.alice.id)))[1] == 0

    assert "the bot's own again" in await answer(env, "settings style add", {"name": "anime"})
    assert await typed(env, "settings style remove", "an") == ["anime"]
