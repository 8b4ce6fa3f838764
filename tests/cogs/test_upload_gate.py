"""Uploads cost no CPU before the member's limits say yes (#21 item 3): limits first, one upload per member at a
time, decoding in a pool of its own (not the default one, where delivery encodes and stores results)."""

from __future__ import annotations

import threading

import cogs.attachments
from core.attachments import normalize_image
from core.upload_gate import ONE_AT_A_TIME
from tests.cogs.test_addons import image_channel
from tests.core.doubles import png
from tests.fakediscord import Upload

PER_MINUTE = "this server allows 0 per minute"


async def test_a_member_over_a_limit_is_refused_before_the_upload_is_downloaded(loopback):
    env = loopback
    await env.bot.jobs.guilds.update(env.fake.world.guild.id, max_jobs_per_minute=0)
    photo = Upload("photo.png", png(640, 480, (9, 90, 200)), content_type="image/png")
    interaction = await env.fake.slash("imagine", {"prompt": "a lighthouse", "image": photo, "reference": photo})
    [refusal] = await interaction.wait_messages(lambda messages: len(messages) == 1)
    assert refusal.ephemeral and PER_MINUTE in refusal.content

    channel = await image_channel(env)
    prompt = await env.fake.say(channel, "a lighthouse", attachments=[photo])
    answer = await env.fake.wait_for_message(lambda m: m.reply_to == prompt.id)
    assert PER_MINUTE in answer.content
    assert env.fake.cdn_requests == []  # nothing was downloaded, so nothing decoded
    assert env.engine.submitted == []


async def test_one_upload_per_member_at_a_time_decoded_in_a_pool_of_its_own(loopback, monkeypatch):
    env = loopback
    world = env.fake.world
    decoding, go_on = threading.Event(), threading.Event()
    threads: list[str] = []

    def slow_normalize(data: bytes, **kwargs) -> bytes:
        threads.append(threading.current_thread().name)
        decoding.set()
        go_on.wait(10)
        return normalize_image(data, **kwargs)

    monkeypatch.setattr(cogs.attachments, "normalize_image", slow_normalize)
    first_photo = Upload("a.png", png(640, 480, (9, 90, 200)), content_type="image/png")
    second_photo = Upload("b.png", png(640, 480, (200, 90, 9)), content_type="image/png")
    first = await env.fake.slash("imagine", {"prompt": "one", "image": first_photo})
    await env.fake.wait_for(decoding.is_set, what="the first decode")
    second = await env.fake.slash("imagine", {"prompt": "two", "image": second_photo})
    [refusal] = await second.wait_messages(lambda messages: len(messages) == 1)
    assert refusal.ephemeral and refusal.content == ONE_AT_A_TIME
    other = await env.fake.slash("imagine", {"prompt": "bob's", "image": second_photo}, user=world.bob)
    await env.fake.wait_for(lambda: len(threads) == 2, what="bob's decode")  # another member is not held up
    go_on.set()
    for interaction in (first, other):
        await env.fake.wait_for(
            lambda i=interaction: i.original if i.original and len(i.original.attachments) == 4 else None,
            what="the drafts",
        )
    assert all(name.startswith("upload-decode") for name in threads), threads
    third = await env.fake.slash("imagine", {"prompt": "three", "image": second_photo})  # the first is done
    await env.fake.wait_for(
        lambda: third.original if third.original and len(third.original.attachments) == 4 else None, what="drafts"
    )
