"""The bot's wiring: every extension loads, commands carry the bounds Discord shows.

That buttons keep working after a restart is clicked through in tests/cogs/test_buttons.py.
"""

from __future__ import annotations

import pytest

from bot import EXTENSIONS, ImagineBot
from core.settings import BotSettings
from engine.api import ASPECTS, MAX_PROMPT_CHARS, MAX_SEED
from tests.core.doubles import FakeEngine


@pytest.fixture
async def bot(store):
    bot = ImagineBot(
        settings=BotSettings(token="t"),
        store=store,
        engine=FakeEngine(),
    )
    async with bot:  # as bot.py runs it (an auto-sharded client sets up its event queue here)
        for name in EXTENSIONS:
            await bot.load_extension(name)
        yield bot


async def test_every_extension_loads_with_its_commands(bot):
    names = sorted(command.name for command in bot.tree.get_commands())
    assert names == ["cancel", "edit", "final", "help", "history", "imagine", "prefer", "queue", "settings", "show"]
    assert sorted(bot.cogs) == [
        "AdminCog", "HelpCog", "HistoryCog", "ImageChannelsCog", "ImagineCog", "PrefsCog", "QueueCog"
    ]


async def test_imagine_options_as_discord_shows_them(bot):
    options = {o["name"]: o for o in bot.tree.get_command("imagine").to_dict(bot.tree)["options"]}
    assert options["prompt"]["required"] and options["prompt"]["max_length"] == MAX_PROMPT_CHARS
    assert (options["seed"]["min_value"], options["seed"]["max_value"]) == (0, MAX_SEED)
    assert [c["value"] for c in options["aspect"]["choices"]] == list(ASPECTS)
    final = {o["name"]: o for o in bot.tree.get_command("final").to_dict(bot.tree)["options"]}
    assert [c["value"] for c in final["model"]["choices"]] == ["ssd-1b", "sdxl"]


async def test_commands_are_server_only_and_settings_need_manage_server(bot):
    for command in bot.tree.get_commands():
        assert command.guild_only, command.name
    assert bot.tree.get_command("settings").default_permissions.manage_guild


async def test_message_content_intent_follows_the_setting(store):
    off = ImagineBot(
        settings=BotSettings(token="t", message_content=False),
        store=store,
        engine=FakeEngine(),
    )
    assert not off.intents.message_content and off.intents.guild_reactions
    assert off.allowed_mentions.everyone is False and off.allowed_mentions.users is False


async def test_one_process_serves_every_shard(bot):
    from discord.ext import commands

    assert isinstance(bot, commands.AutoShardedBot) and bot.shard_count is None  # Discord says how many
