"""/settings safety through real discord.py, and what members see in a channel that is not age-restricted."""

from __future__ import annotations

import sys

import pytest

from tests.cogs.support import FLAG_EPHEMERAL
from tests.core import doubles
from tests.core.safety_images import nude_figure


async def settings_answer(fake, mode: str) -> str:
    answer = await fake.slash("settings safety", {"mode": mode}, user=fake.world.moderator)
    await fake.wait_for(lambda: answer.callback_type is not None, what="/settings safety's answer")
    assert answer.callback_data["flags"] & FLAG_EPHEMERAL
    return answer.callback_data["content"]


async def test_safety_needs_the_extra(loopback, monkeypatch):
    # discord.py loads extensions by spec: the module the bot runs is the one in sys.modules.
    monkeypatch.setattr(sys.modules["cogs.admin"], "safety_available", lambda: False)
    assert "pip install '.[safety]'" in await settings_answer(loopback.fake, "block")
    assert (await loopback.store.guild_settings(int(loopback.fake.world.guild.id))).image_safety == "off"
    assert "Image safety check: off" in await settings_answer(loopback.fake, "off")


async def test_blocked_drafts_are_not_posted_in_a_channel_that_is_not_age_restricted(loopback, monkeypatch):
    pytest.importorskip("nudenet", reason="the [safety] extra is not installed")
    fake = loopback.fake
    assert "flagged images are not posted" in await settings_answer(fake, "block")
    figure = nude_figure(256)
    monkeypatch.setattr(doubles, "png", lambda width, height, color=None: figure)
    general = await fake.slash("imagine", {"prompt": "a marble statue"})
    nsfw = await fake.slash("imagine", {"prompt": "a marble statue"}, channel=fake.world.nsfw)

    def finished(interaction):
        message = interaction.original
        return message if message is not None and ("🛡️" in message.content or message.attachments) else None

    held = await fake.wait_for(lambda: finished(general), what="the checked drafts", timeout=20)
    assert held.attachments == [] and "4 of 4 images held back" in held.content
    shown = await fake.wait_for(lambda: finished(nsfw), what="the age-restricted drafts", timeout=20)
    assert len(shown.attachments) == 4 and "🛡️" not in shown.content
