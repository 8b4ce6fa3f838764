"""Admission: the row before the engine and before Discord's answer, the user's limits, the queue, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from core.delivery import DeliveryError
from core.history import JobParams
from engine.api import DraftRequest
from tests.core.doubles import FakeEngine, RecordingOrigin, eventually
from tests.core.jobs.support import make_service


async def test_row_is_written_before_the_engine_gets_the_job(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox in snow", seed=42)
    assert job is not None and origin.refusals == []
    submitted = engine.item(job.id)
    assert submitted.row_status == "queued"  # read through a second connection at submit time
    assert submitted.user == "1" and submitted.job_id == str(job.id)
    assert submitted.request == DraftRequest(
        prompt="a red fox in snow", seed=42, width=512, height=512, count=4, steps=1
    )
    row = await store.get_job(job.id)
    assert (row.kind, row.mode, row.seed, row.count, row.params) == ("draft", "imagine", 42, 4, JobParams(aspect="1:1"))
    assert row.result_message_id == origin.deliveries[0].placeholder_id  # ❌ on the placeholder finds the job


async def test_the_row_is_written_before_discord_is_answered(service, store, engine):
    """A bot killed right after answering must find the job on its next start."""
    rows_at_ack: list[int] = []

    class Watching(RecordingOrigin):
        async def acknowledge(self, content):
            rows_at_ack.append(len(await store.unfinished_jobs()))
            return await super().acknowledge(content)

    job = await service.imagine(Watching(), prompt="a lamp", seed=2)
    assert rows_at_ack == [1] and job is not None


async def test_a_request_that_could_not_be_answered_is_not_run(service, store, engine):
    class Unreachable(RecordingOrigin):
        async def acknowledge(self, content):
            raise DeliveryError("The channel <#100> no longer exists.")

    assert await service.imagine(Unreachable(), prompt="a lamp") is None
    assert engine.submitted == [] and await store.unfinished_jobs() == []


async def test_waiting_limit_per_user(service, store, engine):
    """A member may queue ten jobs by default; the eleventh is refused with where their next one stands."""
    assert await service.imagine(RecordingOrigin(user_id=2), prompt="first in line") is not None
    for _ in range(10):
        assert await service.imagine(RecordingOrigin(), prompt="cat") is not None
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="cat") is None
    assert "10 jobs waiting" in origin.refusals[0] and "/cancel" in origin.refusals[0]
    assert "position 2 in the queue" in origin.refusals[0]
    assert await service.imagine(RecordingOrigin(user_id=3), prompt="cat") is not None  # others are not held up
    assert len(engine.submitted) == 12


async def test_jobs_per_minute_limit(service, store, engine):
    await store.update_guild_settings(10, max_waiting_per_user=50, max_jobs_per_minute=2)
    service.guilds.forget()
    for _ in range(2):
        job = await service.imagine(RecordingOrigin(), prompt="cat")
        engine.finish(job.id)
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="cat") is None
    assert "2 jobs in the last minute" in origin.refusals[0]


async def test_full_queue_is_refused_before_anything_is_stored(store, engine):
    engine.queue_max = 1
    service = make_service(store, engine)
    engine.offer = dataclasses.replace(engine.offer, queue_max=1)
    assert await service.imagine(RecordingOrigin(user_id=1), prompt="a") is not None
    origin = RecordingOrigin(user_id=2)
    assert await service.imagine(origin, prompt="b") is None
    assert "queue is full" in origin.refusals[0]
    assert (await store.history(user_id=2))[1] == 0
    await service.shutdown(0.0)


async def test_queue_full_at_submit_fails_the_row_and_says_so(service, store, engine):
    engine.queue_max = 0  # the engine refuses although our own count said there was room
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="late")
    row = await store.get_job(job.id)
    assert row.status == "failed" and "queue is full" in row.error
    await eventually(lambda: any("queue is full" in s for s in origin.deliveries[0].shown))


async def test_no_new_jobs_while_shutting_down(service):
    await service.shutdown(0.0)
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="x") is None
    assert "restarting" in origin.refusals[0]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_recent_requests_of_users_who_left_are_forgotten(store, tmp_path):
    clock = Clock()
    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine, clock=clock)
    try:
        for user in range(1, 41):
            job = await service.imagine(RecordingOrigin(user_id=user), prompt="a cat")
            engine.finish(job.id)
        assert len(service.admission._recent) == 40
        clock.now += 120  # past the one-minute window: none of them counts any more
        await service.imagine(RecordingOrigin(user_id=999), prompt="a dog")
        assert set(service.admission._recent) == {999}
    finally:
        await service.shutdown(0.0)


@pytest.mark.parametrize("post_ends", ["posted", "fell back"])
async def test_a_job_whose_result_is_still_being_posted_is_not_done_for_the_queue(service, store, engine, post_ends):
    """The engine is done with it, Discord is not: the job stays the user's (active, counted) until the post ends."""
    await service.guilds.update(10, max_waiting_per_user=1)
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a slow channel")
    delivery = origin.deliveries[0]
    entered, release = asyncio.Event(), asyncio.Event()
    real_post = delivery.post

    async def blocking_post(content, files, view, *, nonce=None):
        entered.set()
        await release.wait()
        if post_ends == "fell back":
            raise DeliveryError("The channel <#100> no longer exists.")
        return await real_post(content, files, view, nonce=nonce)

    delivery.post = blocking_post
    engine.finish(job.id)
    await asyncio.wait_for(entered.wait(), 5.0)
    assert str(job.id) not in {info.job_id for info in await engine.queue_snapshot()}  # the engine let go
    assert job.id in service.active()
    assert (await store.get_job(job.id)).status != "done"
    refused = RecordingOrigin()
    assert await service.imagine(refused, prompt="another") is None
    assert "1 job waiting" in refused.refusals[0]
    release.set()
    await eventually(lambda: service.active() == {})
    assert (await store.get_job(job.id)).status == "done"
    assert bool(delivery.posts) == (post_ends == "posted") and bool(delivery.told) == (post_ends == "fell back")
    assert await service.imagine(RecordingOrigin(), prompt="now there is room") is not None
