"""The door's contract (engine.api.ImageEngine), run against every engine behind it.

Each test is written once and runs for each name in ``ENGINES``: the in-process engine on the tiny
preset (``local``), the cluster engine against the session's local Ray cluster (``cluster``, see
tests/conftest.py; Ray starts once per session) and the bot tests' double (``fake``). Nothing else
here knows which engine it is.

Jobs meant to wait behind a running final are finals too: the cluster runs drafts and finals on
separate replicas, so there a draft does not wait for a final (it only waits behind its own lane).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest
from PIL import Image

from engine.api import (
    DraftRequest,
    EngineStopped,
    FinalRequest,
    ImageEngine,
    JobCancelled,
    JobHandle,
    Progress,
    QueueFull,
    RequestError,
)
from engine.cluster.client import ClusterEngine
from engine.local import LocalEngine
from tests.core.doubles import RunningFakeEngine

from .conftest import tiny_settings

ENGINES = ["local", "cluster", "fake"]  # the one list of engines held to the door

pytestmark = pytest.mark.timeout(300)

# A final that runs long enough to be seen running, waited behind and cancelled (every test cancels it).
SLOW_FINAL = FinalRequest("a slow lighthouse", seed=1, width=512, height=512, steps=40)


def waiting_final(prompt: str, seed: int) -> FinalRequest:
    """A final submitted behind ``busy``: it waits in every engine (one final runs at a time)."""
    return FinalRequest(prompt, seed=seed, width=512, height=512, steps=2)


@pytest.fixture(params=ENGINES)
async def make_engine(request, tiny_cache_dir):
    """Start engines of the parametrised kind; all are closed after the test."""
    made: list[ImageEngine] = []
    cluster = request.getfixturevalue("cluster") if request.param == "cluster" else None

    async def make(*, queue_max: int = 200) -> ImageEngine:
        if request.param == "local":
            engine: ImageEngine = LocalEngine(tiny_settings(tiny_cache_dir, queue_max=queue_max))
        elif cluster is not None:
            engine = ClusterEngine(cluster.url, cluster.token, queue_max=queue_max)
        elif request.param == "fake":
            engine = RunningFakeEngine(queue_max=queue_max)
        else:
            raise AssertionError(f"no engine called {request.param}")
        await engine.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close(30.0)


async def until_state(engine: ImageEngine, job_id: str, state: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (await engine.queue_info(job_id)).state != state:
        assert time.monotonic() < deadline, f"job {job_id} never became {state}"
        await asyncio.sleep(0.01)


async def until_running(engine: ImageEngine, job_id: str) -> None:
    await until_state(engine, job_id, "running")


async def busy(engine: ImageEngine, job_id: str = "busy") -> JobHandle:
    """A slow final, returned once it runs: what is submitted next waits behind it."""
    handle = await engine.submit(SLOW_FINAL, user="z", job_id=job_id)
    await until_running(engine, job_id)
    return handle


def decoded_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


async def test_drafts_come_back_as_pngs_of_the_asked_size_with_one_seed_each(make_engine):
    engine = await make_engine()
    assert isinstance(engine, ImageEngine)
    health = await engine.health()
    assert health.ok and health.reachable
    request = DraftRequest("a red fox in snow", seed=10, width=512, height=384, count=2)
    handle = await engine.submit(request, user="alice", job_id="drafts-1")
    assert handle.job_id == "drafts-1"
    result = await asyncio.wait_for(handle.result(), 120)
    assert [image.seed for image in result.images] == [10, 11]
    assert [decoded_size(image.png) for image in result.images] == [(512, 384), (512, 384)]
    assert all((image.width, image.height) == (512, 384) for image in result.images)
    assert result.request == request and result.model == "turbo"
    assert (await engine.queue_info("drafts-1")).state == "unknown"  # done: no longer in the queue


async def test_a_final_reports_its_steps_on_the_event_loop_thread(make_engine):
    engine = await make_engine()
    loop_thread = threading.get_ident()
    seen: list[tuple[int, Progress]] = []
    request = FinalRequest("a lighthouse at dusk", seed=3, width=512, height=512, steps=3)
    handle = await engine.submit(
        request, user="bob", job_id="final-1", on_progress=lambda p: seen.append((threading.get_ident(), p))
    )
    result = await asyncio.wait_for(handle.result(), 120)
    await asyncio.sleep(0.05)  # progress queued on the loop before the result is all in by now
    assert seen, "no progress"
    assert {thread for thread, _ in seen} == {loop_thread}
    steps = [p.step for _, p in seen]
    assert steps == sorted(steps) and steps[-1] == seen[-1][1].total == result.steps
    assert all(p.job_id == "final-1" for _, p in seen)
    assert [image.seed for image in result.images] == [3]
    assert decoded_size(result.images[0].png) == (512, 512)


async def test_cancel_a_waiting_job(make_engine):
    engine = await make_engine()
    running = await busy(engine)
    waiting = await engine.submit(waiting_final("a cat", 1), user="carol", job_id="waiting-1")
    assert (await engine.queue_info("waiting-1")).state == "waiting"
    assert await engine.cancel("waiting-1")
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(waiting.result(), 10)
    assert (await engine.queue_info("waiting-1")).state == "unknown"
    assert not await engine.cancel("waiting-1")  # gone
    assert not await engine.cancel("never-submitted")
    assert await running.cancel()
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(running.result(), 60)


async def test_cancel_a_running_final_stops_it_at_its_next_step(make_engine):
    engine = await make_engine()
    stepped = asyncio.Event()
    steps: list[int] = []

    def on_progress(progress: Progress) -> None:
        steps.append(progress.step)
        stepped.set()

    handle = await engine.submit(SLOW_FINAL, user="dave", job_id="running-1", on_progress=on_progress)
    await asyncio.wait_for(stepped.wait(), 120)
    assert await handle.cancel()
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(handle.result(), 60)
    assert max(steps) < SLOW_FINAL.steps  # it stopped, it did not run to the end
    await until_state(engine, "running-1", "unknown", timeout=10)  # and leaves the queue


async def test_queue_info_and_snapshot_show_the_order_and_etas(make_engine):
    engine = await make_engine()
    running = await busy(engine)
    first = await engine.submit(waiting_final("one", 1), user="erin", job_id="q-1")
    second = await engine.submit(waiting_final("two", 2), user="frank", job_id="q-2")
    infos = {job_id: await engine.queue_info(job_id) for job_id in ("busy", "q-1", "q-2")}
    assert (infos["busy"].state, infos["busy"].position) == ("running", 0)
    assert [(infos[j].state, infos[j].position) for j in ("q-1", "q-2")] == [("waiting", 1), ("waiting", 2)]
    assert 0 < infos["q-1"].eta_s <= infos["q-2"].eta_s
    snapshot = await engine.queue_snapshot()
    assert [(info.job_id, info.state, info.position) for info in snapshot] == [
        ("busy", "running", 0),
        ("q-1", "waiting", 1),
        ("q-2", "waiting", 2),
    ]
    assert (await engine.queue_info("nobody")).state == "unknown"
    for handle in (first, second, running):
        await handle.cancel()


async def test_a_full_queue_refuses_at_once(make_engine):
    engine = await make_engine(queue_max=1)
    assert engine.offer.queue_max == 1
    running = await busy(engine)
    waiting = await engine.submit(waiting_final("fits", 1), user="gina", job_id="fits")
    with pytest.raises(QueueFull):
        await engine.submit(waiting_final("one too many", 2), user="hank", job_id="too-many")
    assert (await engine.queue_info("too-many")).state == "unknown"
    for handle in (waiting, running):
        await handle.cancel()


async def test_a_job_id_already_in_the_engine_is_refused(make_engine):
    engine = await make_engine()
    running = await busy(engine)
    waiting = await engine.submit(waiting_final("first", 1), user="ivy", job_id="same")
    with pytest.raises(RequestError, match="already"):
        await engine.submit(waiting_final("second", 2), user="ivy", job_id="same")
    with pytest.raises(RequestError, match="already"):
        await engine.submit(waiting_final("third", 3), user="ivy", job_id="busy")  # running counts too
    assert [info.job_id for info in await engine.queue_snapshot()] == ["busy", "same"]
    for handle in (waiting, running):
        await handle.cancel()


async def test_a_bad_request_is_refused_before_it_is_queued(make_engine):
    engine = await make_engine()
    with pytest.raises(RequestError, match="multiple of 64"):
        await engine.submit(DraftRequest("odd size", seed=1, width=500), user="jo", job_id="bad")
    assert await engine.queue_snapshot() == []


async def test_close_returns_the_jobs_that_did_not_finish(make_engine):
    engine = await make_engine()
    running = await busy(engine)
    waiting = await engine.submit(waiting_final("never runs", 1), user="kim", job_id="left-1")
    left = await engine.close(0.0)
    assert sorted(left) == ["busy", "left-1"]
    for handle in (waiting, running):
        with pytest.raises(EngineStopped):  # not failed, not cancelled: run it again on the next start
            await asyncio.wait_for(handle.result(), 30)
    with pytest.raises(EngineStopped):
        await engine.submit(DraftRequest("too late", seed=2), user="kim", job_id="late")
