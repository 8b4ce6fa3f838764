"""Public answers a member can make the bot post are throttled per member (see core.throttle)."""

from __future__ import annotations

import asyncio

from core.origins import MessageOrigin


async def test_image_channel_refusals_are_throttled_per_member(loopback):
    fake, world = loopback.fake, loopback.fake.world
    setting = await fake.slash("settings channels add", {"channel": world.general}, user=world.moderator)
    await fake.wait_for(lambda: setting.callback_type is not None)
    for i in range(8):
        await fake.say(world.general, "", user=world.alice, attachments=[(f"cat{i}.png", b"\x89PNG")])
    await fake.say(world.general, "", user=world.bob, attachments=[("dog.png", b"\x89PNG")])
    await asyncio.sleep(0.5)
    answers = [m for m in fake.bot_messages(world.general) if "Images alone" in m.content]
    to_alice = [m for m in answers if world.alice.id in m.content]
    assert 1 <= len(to_alice) <= 3
    assert sum(world.bob.id in m.content for m in answers) == 1  # another member is not held back


class Channel:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, content, **kwargs) -> None:
        self.sent.append(content)


class Client:
    def __init__(self) -> None:
        self.channel = Channel()

    def get_partial_messageable(self, channel_id, *, guild_id=None):
        return self.channel


async def test_reaction_refusals_share_the_member_throttle():
    client = Client()
    for i in range(6):
        origin = MessageOrigin(client, channel_id=1, guild_id=2, user_id=424242, source_message_id=100 + i)
        await origin.refuse("Job #1 isn't finished yet.")
    assert len(client.channel.sent) == 3
