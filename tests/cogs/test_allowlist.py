"""ALLOWED_GUILDS: outside the listed servers the bot answers nothing (one ephemeral line for a slash command),
logs each server once, and leaves it when LEAVE_UNLISTED_GUILDS says so; with no list and a public application
it warns loudly at start. A mention is not a command (issue 21: it used to log a CommandNotFound traceback)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from bot import ImagineBot
from core.guilds import NOT_ENABLED, PUBLIC_WARNING
from core.settings import BotSettings
from tests.cogs.support import FLAG_EPHEMERAL, imagine, running_harness
from tests.core.doubles import FakeEngine


def _warnings(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


async def test_a_server_outside_the_allowlist_gets_no_answer_to_anything(tmp_path, caplog):
    async with running_harness(tmp_path, caplog) as env:
        fake, world = env.fake, env.fake.world
        drafts = await imagine(env, "a lighthouse")  # posted while the server was served: it has buttons
        job = await env.job_of(drafts)
        await env.store.update_guild_settings(int(world.guild.id), image_channels=frozenset({int(world.general.id)}))
        assert _warnings(caplog, "THIS BOT IS PUBLIC")  # no allowlist, and the fake application is public

        env.settings["allowed_guilds"] = frozenset({int(world.guild.id) + 1})  # some other server only
        await env.stop()
        caplog.clear()
        await env.start()
        jobs_before = (await env.store.history(user_id=int(world.alice.id)))[1]

        command = await fake.slash("imagine", {"prompt": "a lighthouse again"})
        await fake.wait_for(lambda: command.callback_type is not None, what="the refusal")
        assert command.callback_type == 4 and command.callback_data["flags"] & FLAG_EPHEMERAL
        assert command.callback_data["content"] == NOT_ENABLED
        posted_before = len(fake.bot_messages(world.general))  # the ephemeral refusal counts as one
        click = await fake.click(drafts, f"job:{job.id}:u1", user=world.bob)
        await fake.react(drafts, "🔁", user=world.bob)
        await fake.say(world.general, "a castle in the image channel", user=world.alice)
        await fake.say(world.general, f"<@{world.bot.id}> hello", user=world.alice)  # a mention
        await asyncio.sleep(0.5)

        assert click.callback_type is None  # the button did nothing
        assert len(fake.bot_messages(world.general)) == posted_before
        assert (await env.store.history(user_id=int(world.alice.id)))[1] == jobs_before
        assert (await env.store.history(user_id=int(world.bob.id)))[1] == 0
        assert len(_warnings(caplog, "not in ALLOWED_GUILDS")) == 1  # logged once for the server
        assert not _warnings(caplog, "THIS BOT IS PUBLIC")  # an allowlist is set


async def test_a_mention_in_a_served_server_is_not_a_command_error(loopback, caplog):
    fake, world = loopback.fake, loopback.fake.world
    await fake.say(world.general, f"<@{world.bot.id}> hello", user=world.alice)
    await fake.say(world.general, f"<@{world.bot.id}> imagine a cat", user=world.alice)
    await asyncio.sleep(0.3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or "CommandNotFound" in r.getMessage()]


def _server(guild_id: int) -> SimpleNamespace:
    left: list[int] = []

    async def leave() -> None:
        left.append(guild_id)

    return SimpleNamespace(id=guild_id, name=f"server {guild_id}", leave=leave, left=left)


@pytest.mark.parametrize("leave", [False, True])
async def test_an_unlisted_server_is_left_on_join_only_when_the_owner_says_so(store, caplog, leave):
    settings = BotSettings(token="t", allowed_guilds="11, 12", leave_unlisted_guilds=leave)
    bot = ImagineBot(settings=settings, store=store, engine=FakeEngine())
    listed, unlisted = _server(11), _server(99)
    await bot.on_guild_join(listed)
    await bot.on_guild_join(unlisted)
    await bot.on_guild_join(unlisted)  # added again (after being left, or a second invite)
    assert listed.left == []
    assert unlisted.left == ([99, 99] if leave else [])
    assert len(_warnings(caplog, "99 (server 99) is not in ALLOWED_GUILDS")) == 1


def test_allowed_guilds_from_the_environment():
    assert BotSettings.from_env({"DISCORD_TOKEN": "t", "ALLOWED_GUILDS": "123, 456"}).allowed_guilds == {123, 456}
    assert BotSettings.from_env({"DISCORD_TOKEN": "t"}).allowed_guilds == frozenset()
    with pytest.raises(ValueError, match="ALLOWED_GUILDS"):
        BotSettings.from_env({"DISCORD_TOKEN": "t", "ALLOWED_GUILDS": "my-server"})
    assert "Public Bot" in PUBLIC_WARNING and "ALLOWED_GUILDS" in PUBLIC_WARNING
