"""A restart with a full queue: 200 jobs waiting (three of them running) when the bot stopped. Each is submitted
again, in the order it was asked, the running ones back to waiting; none is lost and none is run twice."""

from __future__ import annotations

from core.history import HistoryStore
from tests.core.records import new_job

N = 200


async def test_a_restart_resubmits_200_waiting_jobs_in_order(loopback):
    env = loopback
    world = env.fake.world
    await env.stop()
    store = await HistoryStore.open(env.db_path, token_sweep_interval=None)
    users = (world.alice, world.bob, world.owner)
    ids = []
    for i in range(N):
        job = await store.create_job(new_job(
            guild_id=int(world.guild.id), channel_id=int(world.general.id), user_id=int(users[i % 3].id),
            prompt=f"waiting {i}", seed=i,
        ))
        ids.append(job.id)
    for job_id in ids[:3]:
        await store.mark_running(job_id)
    await store.close()

    await env.start(paused=True)
    await env.fake.wait_for(lambda: len(env.engine.submitted) == N, timeout=60, what="200 jobs submitted again")
    assert [int(item.job_id) for item in env.engine.submitted] == ids  # in the order they were asked
    assert [item.request.prompt for item in env.engine.submitted] == [f"waiting {i}" for i in range(N)]
    assert all(item.row_status == "queued" for item in env.engine.submitted)  # the running three too
    unfinished = await env.store.unfinished_jobs()
    assert [j.id for j in unfinished] == ids and {j.status for j in unfinished} == {"queued"}
