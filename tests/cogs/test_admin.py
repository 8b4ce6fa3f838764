"""/settings: Manage Server is checked in the handler too, not only by Discord's default permissions."""

from __future__ import annotations

from unittest.mock import create_autospec

import discord
import pytest
from discord import app_commands

from cogs.admin import AdminCog, describe_settings
from core.history import GuildSettings


def interaction(*, manage_guild: bool, guild_id: int | None = 10):
    double = create_autospec(discord.Interaction, instance=True)
    double.guild_id = guild_id
    double.permissions = discord.Permissions(manage_guild=manage_guild)
    return double


async def test_manage_server_is_checked_again():
    cog = AdminCog(bot=None)  # type: ignore[arg-type]
    with pytest.raises(app_commands.MissingPermissions):
        await cog.interaction_check(interaction(manage_guild=False))
    with pytest.raises(app_commands.NoPrivateMessage):
        await cog.interaction_check(interaction(manage_guild=True, guild_id=None))
    assert await cog.interaction_check(interaction(manage_guild=True)) is True


def test_settings_group_is_hidden_from_members_by_default():
    group = AdminCog.settings
    assert group.default_permissions == discord.Permissions(manage_guild=True)
    assert group.guild_only
    names = sorted(c.qualified_name for c in group.walk_commands() if isinstance(c, app_commands.Command))
    assert names == [
        "settings channels add",
        "settings channels list",
        "settings channels remove",
        "settings finals",
        "settings limits",
        "settings safety",
        "settings show",
        "settings style add",
        "settings style list",
        "settings style remove",
        "settings words add",
        "settings words list",
        "settings words remove",
    ]


def test_describe_settings_escapes_words():
    text = describe_settings(GuildSettings(guild_id=1, image_channels=frozenset({5}), blocked_words=("*x*",)))
    assert "<#5>" in text and "\\*x\\*" in text
