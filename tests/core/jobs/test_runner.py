"""The runner: queue position and progress edits, failures, an unreachable engine, restart, shutdown, cancel marks."""

from __future__ import annotations

import asyncio

import pytest

from core.history import NewJob
from core.jobs.runner import position_worth_showing
from tests.core.doubles import FakeEngine, RecordingDelivery, RecordingOrigin, eventually
from tests.core.jobs.support import make_service, wait_status


async def test_queue_position_then_progress_edits_for_a_final(service, store, engine):
    first = await service.imagine(RecordingOrigin(user_id=2), prompt="first")
    origin = RecordingOrigin()
    job = await service.final(origin, prompt="a lighthouse", seed=3, model="sdxl")
    delivery = origin.deliveries[0]
    await eventually(lambda: any("position 2" in s for s in delivery.shown))
    engine.finish(first.id)
    engine.run(job.id)
    await eventually(lambda: any("Starting" in s for s in delivery.shown))
    assert (await store.get_job(job.id)).status == "running"
    for step in range(1, 5):
        engine.progress(job.id, step, 4)
        await asyncio.sleep(0.03)
    await eventually(lambda: any("step 4/4" in s for s in delivery.shown))
    engine.finish(job.id)
    await eventually(lambda: delivery.posts)
    content, files, view = delivery.posts[0]
    assert [name for name, _ in files] == ["final.png"]
    assert "sdxl" in content and "4 steps" in content and "`3`" in content
    assert [item.custom_id for item in view.children][-2:] == [f"job:{job.id}:reroll", f"job:{job.id}:remix"]
    assert f"job:{job.id}:zoom2" in [item.custom_id for item in view.children]  # finals: zoom and pan


async def test_progress_edits_are_throttled(store, engine):
    service = make_service(store, engine)
    service.settings = service.settings.model_copy(update={"progress_interval": 0.5})
    origin = RecordingOrigin()
    job = await service.final(origin, prompt="slow", seed=1)
    engine.run(job.id)
    for step in range(1, 21):
        engine.progress(job.id, step, 20)
    await asyncio.sleep(0.3)
    delivery = origin.deliveries[0]
    steps = [s for s in delivery.shown if "step" in s]
    assert len(steps) <= 2  # 20 updates within half a second: at most the first and the newest
    await eventually(lambda: any("step 20/20" in s for s in delivery.shown), timeout=3)
    await service.shutdown(0.0)


def test_queue_positions_are_shown_for_every_move_near_the_front_and_big_moves_further_back():
    assert position_worth_showing(None, 40)
    assert not position_worth_showing(40, 40)
    assert not position_worth_showing(40, 39)
    assert position_worth_showing(40, 32)
    assert position_worth_showing(6, 5) and position_worth_showing(2, 1)
    shown, last = [], None
    for position in range(50, 0, -1):
        if position_worth_showing(last, position):
            shown.append(position)
            last = position
    assert len(shown) < 20 and shown[-5:] == [5, 4, 3, 2, 1]


async def test_an_unreachable_engine_is_shown_and_the_job_runs_when_it_is_back(service, store, engine):
    first = await service.imagine(RecordingOrigin(user_id=2), prompt="ahead")
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a fox while the cluster is down")
    delivery = origin.deliveries[0]
    await eventually(lambda: any("position 2" in s for s in delivery.shown))
    engine.reachable = False
    await eventually(lambda: "unreachable right now" in delivery.shown[-1])
    assert "your job is kept and will run when it is back" in delivery.shown[-1]
    assert (await store.get_job(job.id)).status == "queued"
    engine.reachable = True
    engine.finish(first.id)
    await eventually(lambda: "next in line" in delivery.shown[-1])  # the position shows again
    engine.finish(job.id)
    assert (await wait_status(store, job.id, "done")).seeds
    assert delivery.posts and all("unreachable" not in content for content, _, _ in delivery.posts)


# --------------------------------------------------------------------------- failures


async def test_engine_failure_is_stored_and_shown(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x")
    engine.fail(job.id, "The model produced an all-black image. Try another seed or prompt.")
    row = await wait_status(store, job.id, "failed")
    assert row.error == "The model produced an all-black image. Try another seed or prompt."
    shown = origin.deliveries[0].shown
    await eventually(lambda: any("Failed: The model produced an all-black image" in s for s in shown))


@pytest.mark.parametrize(
    "detail",
    [
        "CUDA error: an illegal memory access was encountered",
        "Model ssd-1b failed to load: OSError: /srv/bot/models/ssd-1b/unet/config.json is not a file",
        "The image engine failed: RuntimeError. Please retry.",
        'Traceback (most recent call last):\n  File "engine/recipes.py", line 3',
        "Could not encode the image: [Errno 28] No space left on device: 'C:\\bot\\tmp\\x.png'",
    ],
)
async def test_internal_failure_text_stays_in_the_log_and_the_row(service, store, engine, caplog, detail):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x")
    engine.fail(job.id, detail)
    row = await wait_status(store, job.id, "failed")
    assert row.error == detail  # the row and the log keep the detail for the owner
    shown = await eventually(lambda: [s for s in origin.deliveries[0].shown if "⚠️" in s])
    assert f"Something went wrong on my side while making job #{job.id}" in shown[-1]
    for leak in ("CUDA", "OSError", "RuntimeError", "/srv", "Traceback", ".py", "Errno", "C:\\"):
        assert leak not in shown[-1]
    assert any(detail in r.getMessage() for r in caplog.records)


async def test_a_failing_finish_job_is_logged_not_left_in_a_dying_task(service, store, engine, monkeypatch, caplog):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a kite", seed=1)
    task = service.runner.task_of(job.id)

    async def broken_finish(*args, **kwargs):
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "finish_job", broken_finish)
    engine.finish(job.id)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5.0)
    assert not task.cancelled() and task.exception() is None
    assert "delivery did not complete" in caplog.text
    assert len(origin.deliveries[0].posts) == 1
    row = await store.get_job(job.id)  # what was posted is on record: a restart edits that message
    assert row.result_message_id is not None and row.result_message_id != origin.deliveries[0].placeholder_id


# --------------------------------------------------------------------------- restart and shutdown


async def test_shutdown_leaves_waiting_jobs_queued(service, store, engine):
    running = await service.imagine(RecordingOrigin(user_id=1), prompt="running")
    waiting = [await service.imagine(RecordingOrigin(user_id=u), prompt="waiting") for u in (2, 3)]
    engine.run(running.id)
    await wait_status(store, running.id, "running")
    original_close = engine.close

    async def close(timeout):
        engine.finish(running.id)  # the running job finishes within the timeout
        return await original_close(timeout)

    engine.close = close
    await service.shutdown(5.0)
    assert (await store.get_job(running.id)).status == "done"
    for job in waiting:
        assert (await store.get_job(job.id)).status == "queued"


async def test_shutdown_requeues_a_running_job_it_could_not_wait_for(service, store, engine, caplog):
    """Past the shutdown timeout the engine gives the running job up: its row says queued again, not running."""
    running = await service.imagine(RecordingOrigin(user_id=1), prompt="too slow to finish")
    waiting = await service.imagine(RecordingOrigin(user_id=2), prompt="waiting")
    engine.run(running.id)
    await wait_status(store, running.id, "running")
    await service.shutdown(0.0)
    assert (await store.get_job(running.id)).status == "queued"
    assert (await store.get_job(waiting.id)).status == "queued"
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "not requeued" in r.getMessage()]


async def test_restart_requeues_and_delivers_unfinished_jobs(store, tmp_path):
    # Rows as a previous run left them: one running, two waiting, one done.
    first_engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    first = make_service(store, first_engine)
    jobs = [await first.imagine(RecordingOrigin(user_id=u), prompt=f"job {u}") for u in (1, 2, 3)]
    done = await first.imagine(RecordingOrigin(user_id=4), prompt="done")
    first_engine.finish(done.id)
    await wait_status(store, done.id, "done")
    first_engine.run(jobs[0].id)
    await wait_status(store, jobs[0].id, "running")
    await first.shutdown(0.0)

    deliveries: dict[int, RecordingDelivery] = {}

    def delivery_for_job(client, job):
        deliveries[job.id] = RecordingDelivery(channel_id=job.channel_id, placeholder_id=job.result_message_id)
        return deliveries[job.id]

    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine, delivery_for_job=delivery_for_job)
    assert await service.start() == 3
    assert [s.job_id for s in engine.submitted] == [str(j.id) for j in jobs]
    assert all(s.row_status == "queued" for s in engine.submitted)  # the running one was requeued
    for job in jobs:
        assert engine.item(job.id).request == first_engine.item(job.id).request
        engine.finish(job.id)
    for job in jobs:
        row = await wait_status(store, job.id, "done")
        assert deliveries[job.id].posts and row.result_message_id is not None
        assert any("after a restart" in s for s in deliveries[job.id].shown)
    await service.shutdown(0.0)


async def test_cancel_marks_of_jobs_that_are_not_running_here_are_forgotten(store, tmp_path):
    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine)
    try:
        for _ in range(5):  # stored but not in this process's engine: cancel only marks the row
            orphan = await store.create_job(
                NewJob(kind="draft", mode="imagine", guild_id=10, channel_id=100, user_id=1, prompt="x",
                       model="turbo", width=512, height=512, seed=1, count=4)
            )
            assert "Cancelled" in await service.cancel(orphan.id, user_id=1, moderator=False, guild_id=10)
        await service.imagine(RecordingOrigin(user_id=2), prompt="a dog")
        assert service.runner._user_cancelled == set()
    finally:
        await service.shutdown(0.0)


@pytest.mark.parametrize("window", ["acknowledging", "submitting"])
async def test_a_cancel_between_the_row_and_the_engine_cancels_the_job(service, store, engine, window):
    """Admission writes the row, then answers Discord and submits: a /cancel in between must hold."""
    entered, release = asyncio.Event(), asyncio.Event()

    class SlowAnswer(RecordingOrigin):
        async def acknowledge(self, content):
            if window == "acknowledging":
                entered.set()
                await release.wait()
            return await super().acknowledge(content)

    real_submit = engine.submit

    async def slow_submit(request, **kwargs):
        handle = await real_submit(request, **kwargs)
        if window == "submitting":
            entered.set()
            await release.wait()
        return handle

    engine.submit = slow_submit
    origin = SlowAnswer()
    admitting = asyncio.create_task(service.imagine(origin, prompt="never mind"))
    await asyncio.wait_for(entered.wait(), 5.0)
    (row,) = await store.unfinished_jobs()
    said = await service.cancel(row.id, user_id=1, moderator=False, guild_id=10)
    assert said == f"Cancelled job #{row.id}."
    release.set()
    assert (await admitting).id == row.id
    await eventually(lambda: origin.deliveries and any("Cancelled" in s for s in origin.deliveries[0].shown))
    assert (await store.get_job(row.id)).status == "cancelled"
    if window == "submitting":
        assert engine.cancelled == [str(row.id)]  # the engine let it go before it ran
    else:
        assert engine.submitted == []  # it never reached the engine
    assert await engine.queue_snapshot() == []
    await eventually(lambda: service.active() == {})
    assert origin.deliveries[0].posts == [] and service.runner._expected == {}
