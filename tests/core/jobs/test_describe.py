"""/describe through the job service: a short job through the engine door, counted against the user's limits,
answered with a numbered list and one button per suggestion (no row)."""

from __future__ import annotations

import asyncio

from core.jobs.describe import NOT_OFFERED, WORKING
from core.suggestions import suggestion_from
from engine.api import DescribeRequest, JobFailed
from tests.core.doubles import FAKE_SUGGESTIONS, FakeEngine, RecordingOrigin, eventually, plain_offer, png
from tests.core.jobs.support import make_service

IMAGE = png(128, 96)


async def started(service, engine, origin):
    """A describe waiting in the engine: the task and its job id."""
    before = len(engine.submitted)
    task = asyncio.create_task(service.describe(origin, IMAGE))
    await eventually(lambda: len(engine.submitted) > before)
    return task, engine.submitted[-1].job_id


async def test_describe_posts_the_suggestions_with_a_button_each(service, store, engine):
    origin = RecordingOrigin(user_id=4)
    task, job_id = await started(service, engine, origin)
    request = engine.item(job_id).request
    assert isinstance(request, DescribeRequest) and (request.image, request.count) == (IMAGE, 4)
    [delivery] = origin.deliveries
    assert delivery.shown == [WORKING]
    engine.finish(job_id)
    assert await task == FAKE_SUGGESTIONS
    [(content, files, view)] = delivery.posts
    assert files == [] and content.splitlines()[1:5] == [f"{n}. {text}" for n, text in enumerate(FAKE_SUGGESTIONS, 1)]
    assert [item.custom_id for item in view.children] == ["describe:1", "describe:2", "describe:3", "describe:4"]
    assert [suggestion_from(content, n) for n in range(1, 5)] == list(FAKE_SUGGESTIONS)
    assert await store.get_job(1) is None  # no row: nothing to reroll


async def test_a_describe_counts_against_the_users_limits_while_it_runs(service, store, engine):
    await service.guilds.update(10, max_waiting_per_user=1)
    origin = RecordingOrigin(user_id=4)
    task, job_id = await started(service, engine, origin)
    refused = RecordingOrigin(user_id=4)
    assert await service.imagine(refused, prompt="a fox") is None
    assert refused.refusals[0].startswith("You already have 1 job waiting")
    other = RecordingOrigin(user_id=5)
    assert await service.imagine(other, prompt="a fox") is not None  # another member is not held up
    engine.finish(job_id)
    await task
    assert await service.imagine(RecordingOrigin(user_id=4), prompt="a fox") is not None


async def test_a_failed_describe_says_so_on_its_message(service, engine):
    origin = RecordingOrigin()
    task, job_id = await started(service, engine, origin)
    engine.item(job_id).handle.future.set_exception(JobFailed("The image could not be read."))
    assert await task is None
    assert origin.deliveries[0].shown[-1] == "⚠️ The image could not be read." and origin.deliveries[0].posts == []


async def test_describe_is_refused_where_the_engine_does_not_offer_it(store, inputs, tmp_path):
    bare = FakeEngine(str(tmp_path / "history.sqlite3"), offer=plain_offer())
    service = make_service(store, bare, inputs=inputs)
    origin = RecordingOrigin()
    assert await service.describe(origin, IMAGE) is None
    assert origin.refusals == [NOT_OFFERED] and bare.submitted == [] and origin.deliveries == []
    await service.shutdown(0.0)
