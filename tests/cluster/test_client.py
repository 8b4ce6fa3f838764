"""ClusterEngine against a small stand-in for the cluster's HTTP door (no Ray): fairness, capacity,
retries and an unreachable cluster, as the bot sees them."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from engine.api import EngineStopped, JobCancelled, JobFailed
from engine.cluster import wire
from engine.cluster.client import WORKER_LOST_TWICE, ClusterEngine
from engine.requests import DraftRequest, FinalRequest
from engine.results import GeneratedImage, JobResult

TOKEN = "fake-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeCluster:
    """Speaks the ingress's HTTP: /health with a capacity, /jobs held until the test releases them."""

    def __init__(self, draft_images: int = 4, finals: int = 1):
        self.capacity = {"draft_images": draft_images, "final": finals}
        self.arrivals: list[str] = []
        self.in_flight: set[str] = set()
        self.most_in_flight = {"draft": 0, "final": 0}
        self.lose_worker: dict[str, int] = {}  # job id -> how many times its worker dies
        self.release = asyncio.Event()
        self.release.set()
        self.url = ""

    async def health(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({}, status=401)
        return web.json_response(
            {"ok": True, "replicas": {"draft": 1, "final": 1}, "capacity": self.capacity, "offer": {"queue_max": 5}}
        )

    async def jobs(self, request: web.Request) -> web.StreamResponse:
        job_id, payload = await wire.read_job(request.content.iter_any(), request.headers)
        req = wire.decode_request(payload)
        self.arrivals.append(job_id)
        self.in_flight.add(job_id)
        lane_count = sum(1 for j in self.in_flight if j.startswith(req.kind[0]))
        self.most_in_flight[req.kind] = max(self.most_in_flight[req.kind], lane_count)
        response = web.StreamResponse(headers={"Content-Type": wire.MEDIA_TYPE})
        await response.prepare(request)
        try:
            if req.kind == "final":
                await response.write(wire.progress_frame(1, 2, None))
            await self.release.wait()
            if self.lose_worker.get(job_id, 0) > 0:
                self.lose_worker[job_id] -= 1
                await response.write(wire.error_frame("worker_lost", "The GPU worker running this job stopped."))
            else:
                images = tuple(GeneratedImage(b"png", s, req.width, req.height) for s in req.seeds)
                result = JobResult(images, req.model, req, 1, 0.0, {"run": 0.01}, 1)
                await response.write(wire.result_frame(result))
        finally:
            self.in_flight.discard(job_id)
        return response

    async def __aenter__(self) -> FakeCluster:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/jobs", self.jobs)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = _free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


def draft(seed: int) -> DraftRequest:
    return DraftRequest("fox", seed=seed, width=256, height=256, count=4)


@pytest.mark.timeout(30)
async def test_users_take_turns_and_only_what_the_replicas_can_take_is_sent():
    async with FakeCluster(draft_images=4, finals=1) as cluster:
        engine = ClusterEngine(cluster.url, TOKEN)
        await engine.start()
        assert engine.offer.backend == "ray" and engine.offer.queue_max == 5
        cluster.release.clear()
        handles = []
        for job_id, user in [("d-a1", "a"), ("d-a2", "a"), ("d-a3", "a"), ("d-b1", "b"), ("f-c1", "c")]:
            request = draft(1) if job_id.startswith("d") else FinalRequest("owl", seed=2, width=256, height=256)
            handles.append(await engine.submit(request, user=user, job_id=job_id))
        await asyncio.sleep(0.3)
        # One draft (4 images = the capacity) and, in its own lane, the final.
        assert sorted(cluster.arrivals) == ["d-a1", "f-c1"]
        infos = {i.job_id: (i.state, i.position) for i in await engine.queue_snapshot()}
        assert infos["d-b1"] == ("waiting", 1) and infos["d-a2"] == ("waiting", 2)
        cluster.release.set()
        await asyncio.gather(*(h.result() for h in handles))
        assert [j for j in cluster.arrivals if j.startswith("d")] == ["d-a1", "d-b1", "d-a2", "d-a3"]
        assert cluster.most_in_flight == {"draft": 1, "final": 1}
        assert await engine.close() == []


@pytest.mark.timeout(30)
async def test_a_lost_worker_is_retried_once_with_the_same_job_id_then_only_that_job_fails():
    async with FakeCluster(draft_images=16) as cluster:
        cluster.lose_worker = {"d-once": 1, "d-twice": 2}
        engine = ClusterEngine(cluster.url, TOKEN)
        await engine.start()
        once = await engine.submit(draft(10), user="a", job_id="d-once")
        twice = await engine.submit(draft(20), user="b", job_id="d-twice")
        fine = await engine.submit(draft(30), user="c", job_id="d-fine")
        assert [i.seed for i in (await once.result()).images] == [10, 11, 12, 13]
        with pytest.raises(JobFailed, match="stopped twice"):
            await twice.result()
        assert (await fine.result()).request.seed == 30
        assert cluster.arrivals.count("d-once") == 2 and cluster.arrivals.count("d-twice") == 2
        assert cluster.arrivals.count("d-fine") == 1 and WORKER_LOST_TWICE
        await engine.close()


@pytest.mark.timeout(30)
async def test_an_unreachable_cluster_keeps_jobs_queued_and_says_so():
    engine = ClusterEngine(f"http://127.0.0.1:{_free_port()}", TOKEN)
    await engine.start(wait_s=2)
    health = await engine.health()
    assert not health.reachable and not health.ok and "ClientConnectorError" in (health.error or "")
    first = await engine.submit(draft(1), user="a", job_id="kept-1")
    second = await engine.submit(draft(2), user="b", job_id="kept-2")
    await asyncio.sleep(0.5)
    assert (await engine.queue_info("kept-2")).position == 2
    assert "2 job(s) are kept" in (await engine.health()).detail
    assert await first.cancel()
    with pytest.raises(JobCancelled):
        await first.result()
    assert await engine.close(timeout=1) == ["kept-2"]
    with pytest.raises(EngineStopped):
        await second.result()
    with pytest.raises(EngineStopped):
        await engine.submit(draft(3), user="a", job_id="late")


@pytest.mark.timeout(30)
async def test_a_wrong_token_keeps_jobs_queued_with_a_clear_error():
    async with FakeCluster() as cluster:
        engine = ClusterEngine(cluster.url, "not-the-token")
        await engine.start(wait_s=2)
        health = await engine.health()
        assert not health.reachable and "ENGINE_TOKEN" in health.error
        await engine.submit(draft(1), user="a", job_id="kept")
        await asyncio.sleep(0.3)
        assert cluster.arrivals == []
        assert await engine.close(timeout=1) == ["kept"]


class GarbledHealth(FakeCluster):
    """A /health that first answers what is not this bot's ingress (a proxy's page, another version), then well."""

    def __init__(self, garbage: list[web.Response]):
        super().__init__()
        self.garbage = garbage

    async def health(self, request: web.Request) -> web.Response:
        if self.garbage:
            return self.garbage.pop(0)
        return await super().health(request)


GARBAGE = {
    "a list": lambda: web.json_response([1, 2]),
    "words for numbers": lambda: web.json_response({"ok": True, "replicas": {"draft": "one"}, "capacity": {}}),
    "a capacity that is a list": lambda: web.json_response({"ok": True, "capacity": [4, 1]}),
    "an offer of wrong types": lambda: web.json_response({"ok": True, "offer": {"loras": 3, "queue_max": "many"}}),
    "html": lambda: web.Response(text="<html>It works!</html>", content_type="text/html"),
    "a 500 with html": lambda: web.Response(status=500, text="<html>oops</html>", content_type="text/html"),
    "null": lambda: web.json_response(None),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("answer", list(GARBAGE))
async def test_a_health_answer_that_cannot_be_read_is_waited_out_and_jobs_still_run(answer, caplog):
    async with GarbledHealth([GARBAGE[answer](), GARBAGE[answer]()]) as cluster:
        engine = ClusterEngine(cluster.url, TOKEN, max_backoff_s=0.2)
        await engine.start(wait_s=2)
        handle = await engine.submit(draft(5), user="a", job_id="after-garbage")
        result = await asyncio.wait_for(handle.result(), 10)
        assert result.request.seed == 5 and cluster.arrivals == ["after-garbage"]
        health = await engine.health()
        assert health.ok and health.info["capacity"] == {"draft_images": 4, "final": 1}
        assert engine.offer.queue_max == 5
        assert await engine.close() == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # waited out, not a crash of a loop


@pytest.mark.timeout(30)
async def test_a_dispatch_loop_that_dies_is_started_again_with_one_log_line(caplog, monkeypatch):
    async with FakeCluster() as cluster:
        engine = ClusterEngine(cluster.url, TOKEN, max_backoff_s=0.2)
        await engine.start(wait_s=2)
        real_next = engine._waiting.next_job
        failures = [RuntimeError("a bug in the waiting room")]

        def next_job(running):
            if failures:
                raise failures.pop()
            return real_next(running)

        monkeypatch.setattr(engine._waiting, "next_job", next_job)
        first = await engine.submit(draft(1), user="a", job_id="first")
        second = await engine.submit(draft(2), user="b", job_id="second")
        await asyncio.wait_for(asyncio.gather(first.result(), second.result()), 10)
        assert sorted(cluster.arrivals) == ["first", "second"]
        assert await engine.close() == []
    stopped = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage() and r.levelname == "ERROR"]
    assert len(stopped) == 1 and "dispatch" in stopped[0] and "a bug in the waiting room" in stopped[0]


@pytest.mark.timeout(30)
async def test_a_final_cancelled_in_flight_leaves_no_task_behind():
    async with FakeCluster() as cluster:
        engine = ClusterEngine(cluster.url, TOKEN)
        await engine.start()
        before = asyncio.all_tasks()
        cluster.release.clear()  # the final stays in flight, after its first progress frame
        steps = asyncio.Event()
        request = FinalRequest("owl", seed=2, width=256, height=256)
        try:
            handle = await engine.submit(request, user="a", job_id="f-cancelled", on_progress=lambda p: steps.set())
            await asyncio.wait_for(steps.wait(), 5)
            assert await handle.cancel()
            with pytest.raises(JobCancelled):
                await handle.result()
        finally:
            cluster.release.set()  # the stand-in's own handler (a task of this loop too) may end
        for _ in range(100):
            if not asyncio.all_tasks() - before:
                break
            await asyncio.sleep(0.02)
        assert asyncio.all_tasks() - before == set()
        assert (await engine.queue_info("f-cancelled")).state == "unknown"
        assert await engine.close() == []
