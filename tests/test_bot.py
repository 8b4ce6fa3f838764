"""The bot's wiring: every extension loads, commands carry the bounds Discord shows.

That buttons keep working after a restart is clicked through in tests/cogs/test_buttons.py.
"""

from __future__ import annotations

import pytest

from bot import EXTENSIONS, ImagineBot
from core.settings import BotSettings
from engine.api import ASPECTS, MAX_PROMPT_CHARS, MAX_SEED
from tests.core.doubles import FakeEngine, plain_offer


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
    assert names == [
        "cancel", "describe", "edit", "final", "forget", "help", "history", "imagine", "prefer", "queue", "settings",
        "show",
    ]
    assert sorted(bot.cogs) == [
        "AdminCog", "DescribeCog", "HelpCog", "HistoryCog", "ImageChannelsCog", "ImagineCog", "PrefsCog", "QueueCog"
    ]


async def test_imagine_options_as_discord_shows_them(bot):
    options = {o["name"]: o for o in bot.tree.get_command("imagine").to_dict(bot.tree)["options"]}
    assert options["prompt"]["required"] and options["prompt"]["max_length"] == MAX_PROMPT_CHARS
    assert (options["seed"]["min_value"], options["seed"]["max_value"]) == (0, MAX_SEED)
    assert [c["value"] for c in options["aspect"]["choices"]] == list(ASPECTS)
    final = {o["name"]: o for o in bot.tree.get_command("final").to_dict(bot.tree)["options"]}
    assert [c["value"] for c in final["model"]["choices"]] == ["ssd-1b", "sdxl"]


ADDON_OPTIONS = {"lora", "lora_weight", "lora2", "lora2_weight", "reference", "reference_weight", "reference_mode"}


async def test_addon_options_as_discord_shows_them(bot):
    for name in ("imagine", "final"):
        options = {o["name"]: o for o in bot.tree.get_command(name).to_dict(bot.tree)["options"]}
        assert ADDON_OPTIONS <= set(options), name
        assert options["lora"]["autocomplete"] and options["lora2"]["autocomplete"] and "choices" not in options["lora"]
        assert (options["lora_weight"]["min_value"], options["lora_weight"]["max_value"]) == (-2, 2)
        assert (options["reference_weight"]["min_value"], options["reference_weight"]["max_value"]) == (0, 2)
        assert options["lora_weight"]["description"].endswith("acts, -2 to 2 (default 1)")
        assert options["reference_weight"]["description"].endswith("acts, 0 to 2 (default 0.5)")
        assert [c["value"] for c in options["reference_mode"]["choices"]] == ["full", "style"]
        assert options["reference"]["type"] == 11  # an attachment


async def test_options_of_addons_the_engine_lacks_are_not_registered(store):
    bot = ImagineBot(settings=BotSettings(token="t"), store=store, engine=FakeEngine(offer=plain_offer()))
    async with bot:
        for name in EXTENSIONS:
            await bot.load_extension(name)
        assert bot.tree.get_command("describe") is None
        assert "DescribeCog" in bot.cogs  # its buttons still work on messages posted while describe was on
        for name in ("imagine", "final"):
            options = {o["name"] for o in bot.tree.get_command(name).to_dict(bot.tree)["options"]}
            assert not options & ADDON_OPTIONS, name
            assert {"prompt", "seed", "aspect"} <= options
    lora_only = ImagineBot(
        settings=BotSettings(token="t"), store=store, engine=FakeEngine(offer=plain_offer(loras=("ink",)))
    )
    async with lora_only:
        await lora_only.load_extension("cogs.imagine")
        options = {o["name"] for o in lora_only.tree.get_command("imagine").to_dict(lora_only.tree)["options"]}
        assert options & ADDON_OPTIONS == {"lora", "lora_weight", "lora2", "lora2_weight"}


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
