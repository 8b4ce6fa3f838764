"""/queue (cogs/queue.py) through the loopback Discord: what a member sees of their jobs."""

from __future__ import annotations

import asyncio

from core.delivery import Delivery


async def test_a_job_whose_result_is_still_being_posted_is_listed_as_posting(loopback, monkeypatch):
    """The engine is done with it, Discord is not (a slow or rate-limited channel): it is still in the queue."""
    fake = loopback.fake
    posting, release = asyncio.Event(), asyncio.Event()
    real_post = Delivery.post

    async def slow_post(self, *args, **kwargs):
        posting.set()
        await release.wait()
        return await real_post(self, *args, **kwargs)

    monkeypatch.setattr(Delivery, "post", slow_post)
    asked = await fake.slash("imagine", {"prompt": "a slow channel"})
    await asyncio.wait_for(posting.wait(), 10.0)
    assert await loopback.engine.queue_snapshot() == []  # the engine let go
    queue = await fake.slash("queue")
    await fake.wait_for(lambda: queue.callback_type is not None)
    content = queue.callback_data["content"]
    assert "nothing in the queue" not in content
    assert "1 being posted" in content and "a slow channel" in content and "being posted" in content.splitlines()[1]
    other = await fake.slash("queue", user=fake.world.bob)
    await fake.wait_for(lambda: other.callback_type is not None)
    assert "You have nothing in the queue." in other.callback_data["content"]  # it is not Bob's
    release.set()
    await fake.wait_for(lambda: asked.original is not None and len(asked.original.attachments) == 4)
    await fake.wait_for(lambda: loopback.bot.jobs.active() == {})
    after = await fake.slash("queue")
    await fake.wait_for(lambda: after.callback_type is not None)
    assert "You have nothing in the queue." in after.callback_data["content"]
