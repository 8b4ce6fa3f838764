"""The cluster engine end to end: ClusterEngine -> Serve's HTTP proxy -> ingress -> draft/final replicas.

One local Ray cluster (CPU, ``num_gpus=0``, 100 MB object store) runs for the whole session (see
tests/conftest.py). The tests that break it (a killed replica, Serve stopped for 30 s) run last.
"""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import pytest
from PIL import Image

from engine.api import ImageEngine, JobCancelled
from engine.output import read_parameters
from engine.requests import DraftRequest, FinalRequest

pytestmark = pytest.mark.slow


def size_of(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return img.size


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_a_request_without_the_token_is_refused(cluster):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cluster.url}/health") as response:
            assert response.status == 401
        body = {"job_id": "x", "request": {"kind": "draft", "prompt": "fox", "seed": 1}}
        async with http.post(f"{cluster.url}/jobs", json=body, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with http.get(f"{cluster.url}/health", headers={"Authorization": f"Bearer {cluster.token}"}) as response:
            assert response.status == 200
            assert (await response.json())["offer"]["backend"] == "ray"


@pytest.mark.timeout(60)
async def test_the_engine_stands_behind_the_door_and_reports_the_cluster(engine):
    assert isinstance(engine, ImageEngine)
    health = await engine.health()
    assert health.ok and health.reachable, health
    assert health.info["replicas"] == {"draft": 1, "final": 1}
    assert engine.offer.backend == "ray" and engine.offer.final_steps == 4  # the tiny preset's default


@pytest.mark.timeout(120)
async def test_16_concurrent_drafts_run_in_batches_each_with_its_own_seeds(engine):
    requests = [DraftRequest(f"fox {i}", seed=1000 * i, width=256, height=256, count=2) for i in range(16)]
    handles = [await engine.submit(r, user=f"user{i % 4}", job_id=f"batch-{i}") for i, r in enumerate(requests)]
    results = await asyncio.gather(*(h.result() for h in handles))
    assert max(r.batch_size for r in results) > 1, [r.batch_size for r in results]
    for request, result in zip(requests, results, strict=True):
        assert result.request == request
        assert [image.seed for image in result.images] == list(request.seeds)
        assert all(size_of(image.png) == (256, 256) for image in result.images)
        assert f"Seed: {request.seed}" in read_parameters(result.images[0].png)
    assert await engine.queue_snapshot() == []


@pytest.mark.timeout(180)
async def test_real_sized_drafts_and_finals_cross_the_cluster_whole(engine):
    # The session's cluster runs ENGINE_TINY_DETAIL=photo: four 512 px drafts are 1.4 MB of PNG, a 1024 px
    # final 1.7 MB, both far past the line limit the NDJSON wire had (512 KiB).
    drafts = DraftRequest("a harbour at dusk", seed=70, width=512, height=512, count=4)
    final = FinalRequest("a harbour at dusk", seed=72)
    handles = [await engine.submit(r, user="u", job_id=f"real-{r.kind}") for r in (drafts, final)]
    drafted, finished = await asyncio.gather(*(h.result() for h in handles))
    assert [image.seed for image in drafted.images] == [70, 71, 72, 73]
    assert all(size_of(i.png) == (512, 512) and len(i.png) >= 300_000 for i in drafted.images), drafted.images
    (image,) = finished.images
    assert size_of(image.png) == (1024, 1024) and len(image.png) >= 1_200_000, len(image.png)
    assert "Seed: 72" in read_parameters(image.png)


@pytest.mark.timeout(60)
async def test_a_final_streams_progress_and_previews(engine):
    seen = []
    handle = await engine.submit(
        FinalRequest("a lighthouse", seed=3, width=256, height=256, steps=6),
        user="u",
        job_id="final-progress",
        on_progress=seen.append,
    )
    result = await handle.result()
    assert [p.step for p in seen] == [1, 2, 3, 4, 5, 6]
    assert {p.total for p in seen} == {6} and {p.job_id for p in seen} == {"final-progress"}
    assert seen[4].preview is not None and size_of(seen[4].preview)  # every 5th step has a preview
    assert result.steps == 6 and size_of(result.images[0].png) == (256, 256)
    assert (await engine.queue_info("final-progress")).state == "unknown"


@pytest.mark.timeout(120)
async def test_cancelling_a_running_final_stops_it_at_its_next_step(engine):
    steps = []
    long = FinalRequest("a slow castle", seed=4, width=1024, height=1024, steps=100)
    handle = await engine.submit(long, user="u", job_id="final-long", on_progress=steps.append)
    await wait_for(lambda: len(steps) >= 2, 60, "the long final to start")
    per_step = (time.monotonic() - engine._running["final-long"].started_at) / len(steps)
    assert (await engine.queue_info("final-long")).state == "running"
    assert await engine.cancel("final-long")
    with pytest.raises(JobCancelled):
        await handle.result()
    # The one final replica is free again long before the 98 steps left would have run.
    started = time.monotonic()
    short = await engine.submit(FinalRequest("quick", seed=5, width=256, height=256, steps=2), user="v", job_id="q")
    await short.result()
    waited = time.monotonic() - started
    assert waited < 0.5 * per_step * 98, (waited, per_step)
    assert len(steps) < 20
    assert not await engine.cancel("final-long")  # gone


@pytest.mark.timeout(60)
async def test_cancelling_one_running_draft_leaves_the_rest_of_its_batch(engine):
    requests = [DraftRequest(f"fox {i}", seed=100 * i, width=512, height=512, count=2) for i in range(4)]
    handles = [await engine.submit(r, user=f"u{i}", job_id=f"cb-{i}") for i, r in enumerate(requests)]
    deadline = time.monotonic() + 10
    while (await engine.queue_info("cb-1")).state != "running":  # all four fit in one batch's room
        assert time.monotonic() < deadline, "cb-1 never started"
        await asyncio.sleep(0.01)
    assert await engine.cancel("cb-1")
    with pytest.raises(JobCancelled):
        await handles[1].result()
    for i in (0, 2, 3):
        assert (await handles[i].result()).request == requests[i]
    after = await engine.submit(DraftRequest("still fine", seed=9, width=256, height=256), user="u", job_id="cb-after")
    assert [image.seed for image in (await after.result()).images] == [9, 10, 11, 12]


def _replica_of(deployment: str):
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"#{deployment}#" in actor["name"]:
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise AssertionError(f"no replica of {deployment}")


@pytest.mark.timeout(240)
async def test_a_replica_killed_mid_job_is_retried_and_the_job_delivered_once(engine):
    import ray

    steps = []
    request = FinalRequest("a stubborn fox", seed=6, width=512, height=512, steps=80)
    handle = await engine.submit(request, user="u", job_id="final-killed", on_progress=steps.append)
    await wait_for(lambda: len(steps) >= 2, 60, "the final to start")
    ray.kill(_replica_of("FinalWorker"), no_restart=True)
    result = await handle.result()
    assert result.request == request and len(result.images) == 1
    restarts = [i for i in range(1, len(steps)) if steps[i].step < steps[i - 1].step]
    assert len(restarts) == 1, [p.step for p in steps]  # one retry, from the first step
    assert steps[-1].step == 80
    await asyncio.sleep(1.0)
    assert steps[-1].step == 80 and (await engine.queue_info("final-killed")).state == "unknown"


@pytest.mark.timeout(300)
async def test_jobs_wait_while_the_cluster_is_down_and_run_when_it_is_back(cluster, engine):
    from ray import serve

    serve.shutdown()  # the proxy and the application are gone
    stopped = time.monotonic()
    draft = await engine.submit(DraftRequest("patient fox", seed=11, width=256, height=256), user="a", job_id="d-wait")
    final = await engine.submit(
        FinalRequest("patient owl", seed=12, width=256, height=256, steps=2), user="b", job_id="f-wait"
    )
    deadline = time.monotonic() + 20
    while (await engine.health()).reachable:
        assert time.monotonic() < deadline, "health() never noticed the cluster was down"
        await asyncio.sleep(0.2)
    health = await engine.health()
    assert not health.ok and "unreachable" in health.detail and health.info["waiting"] == 2
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
    assert {i.job_id: i.state for i in await engine.queue_snapshot()} == {"d-wait": "waiting", "f-wait": "waiting"}
    assert not draft._job.future.done() and not final._job.future.done()
    await asyncio.to_thread(cluster.redeploy)
    draft_result, final_result = await asyncio.gather(draft.result(), final.result())
    assert draft_result.request.seed == 11 and [i.seed for i in draft_result.images] == [11, 12, 13, 14]
    assert final_result.images[0].seed == 12
    assert (await engine.health()).reachable
