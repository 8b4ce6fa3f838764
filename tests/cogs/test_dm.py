"""Results by DM (/prefer dm:true) through real discord.py and the loopback Discord's DM routes."""

from __future__ import annotations

from tests.cogs.support import imagine


async def test_a_member_who_asked_gets_each_result_by_dm_too(loopback):
    fake, world = loopback.fake, loopback.fake.world
    setting = await fake.slash("prefer set", {"dm": True})
    await fake.wait_for(lambda: setting.callback_type is not None, what="/prefer's answer")
    drafts = await imagine(loopback, "a copper kettle")
    job = await loopback.job_of(drafts)
    dm = await fake.wait_for(lambda: next(iter(fake.messages(world.dm_channel(world.alice))), None), what="the DM")
    assert [a.filename for a in dm.attachments] == [f"draft_{i}.png" for i in range(1, 5)]
    assert "copper kettle" in dm.content and f"job #{job.id}" in dm.content and drafts.id in dm.content
    assert fake.messages(world.dm_channel(world.bob)) == []
