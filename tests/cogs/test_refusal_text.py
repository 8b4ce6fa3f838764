"""Refusals in an image channel: what the member typed is repeated short, escaped and quoted, and always arrives.

Discord refuses a message over 2,000 characters; a refusal that long was lost, and the member heard nothing.
"""

from __future__ import annotations

import re

from core.origins import PUBLIC_REFUSALS_PER_MINUTE, MessageOrigin
from core.throttle import UserThrottle


async def test_refusals_of_long_or_crafted_text_in_an_image_channel_arrive_short_and_escaped(loopback, monkeypatch):
    monkeypatch.setattr(MessageOrigin, "replies", UserThrottle(PUBLIC_REFUSALS_PER_MINUTE, 60.0))  # this test's own
    fake = loopback.fake
    world = fake.world
    setting = await fake.slash("settings channels add", {"channel": world.general}, user=world.moderator)
    await fake.wait_for(lambda: setting.callback_type is not None)
    for typed, said in (
        ("a castle --model " + "x" * 3000, "--model “xxx"),  # a member with Nitro may write 4,000 characters
        ("a castle --" + "n" * 3000, "I don't know the parameter “--nnn"),
        ("a castle --model [click](https://evil.example) <@1> **big**", "--model “\\[click](https://evil.example)"),
    ):
        prompt = await fake.say(world.general, typed, user=world.alice)
        answer = await fake.wait_for_message(lambda m, p=prompt: m.reply_to == p.id)
        assert said in answer.content and len(answer.content) <= 400, answer.content
        assert re.search(r"(?<!\\)\[click\]\(", answer.content) is None  # no masked link in the bot's words
        assert "<@1>" not in answer.content.replace("\\<@1>", "") and "**big" not in answer.content
