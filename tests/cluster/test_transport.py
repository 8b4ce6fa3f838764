"""The cluster's HTTP link at real sizes, through the real transport (aiohttp on 127.0.0.1, no Ray).

Real images are large: a 1024 px final is 1.2-2.5 MB of PNG, four drafts up to 2 MB, an upscale far
more, and base64 adds a third. A result of 20 MB and a request carrying five 10 MiB images must
cross, and a stream that breaks or is garbage must end the job with a sentence a member can read.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from engine.api import JobFailed
from engine.cluster import wire
from engine.cluster.client import WORKER_LOST_TWICE, ClusterEngine
from engine.cluster.transport import TOO_LARGE
from engine.requests import DraftInit, DraftRequest, FinalRequest, ImageInit
from engine.results import GeneratedImage, JobResult
from tests.conftest import free_port

TOKEN = "fake-token"
MB = 1_000_000
MIB = 2**20


class SizedCluster:
    """The ingress's HTTP, answering each job as the test says: a result of so many bytes of images,
    or a broken stream (``answers``: job id -> what to send)."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}
        self.received: dict[str, object] = {}  # job id -> the request it decoded
        self.arrivals: list[str] = []
        self.max_body = wire.HEADER_BYTES + wire.MAX_FRAME_BYTES  # the ingress's limit
        self.url = ""

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "replicas": {"draft": 1, "final": 1}, "capacity": {"draft_images": 16, "final": 1}}
        )

    async def jobs(self, request: web.Request) -> web.StreamResponse:
        if (request.content_length or 0) > self.max_body:
            return web.json_response({"error": "too large"}, status=413)
        job_id, payload = await wire.read_job(request.content.iter_chunked(2**16), request.headers)
        req = wire.decode_request(payload)
        self.received[job_id] = req
        self.arrivals.append(job_id)
        response = web.StreamResponse(headers={"Content-Type": wire.MEDIA_TYPE})
        await response.prepare(request)
        answer = self.answers.get(job_id, 0)
        if isinstance(answer, int):  # a result whose images hold this many bytes, after some progress
            await response.write(wire.progress_frame(1, 2, os.urandom(150_000)))
            await response.write(wire.result_frame(result_of(req, answer)))
        elif answer == "truncated":  # half a frame, then the connection ends
            frame = wire.result_frame(result_of(req, 3 * MB))
            await response.write(frame[: len(frame) // 2])
        elif answer == "garbage":
            await response.write(b"<html><body>502 Bad Gateway</body></html>\n" * 40)
        elif answer == "oversize":  # a header announcing more than any frame may hold
            await response.write((wire.MAX_FRAME_BYTES + 1).to_bytes(4, "big") + b"{}")
        elif answer == "ndjson":  # the previous wire format: one line of JSON
            frame = wire.result_frame(result_of(req, 1000))
            await response.write(frame[4:] + b"\n")
        return response

    async def __aenter__(self) -> SizedCluster:
        app = web.Application(client_max_size=wire.MAX_FRAME_BYTES + 2**16)
        app.router.add_get("/health", self.health)
        app.router.add_post("/jobs", self.jobs)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


def result_of(request, total_bytes: int) -> JobResult:
    """A result of ``request`` whose images hold ``total_bytes`` of incompressible bytes together."""
    seeds = request.seeds
    share = total_bytes // len(seeds)
    images = tuple(GeneratedImage(_blob(seed, share), seed, request.width, request.height) for seed in seeds)
    return JobResult(images, request.model, request, 1, 0.0, {"run": 0.01}, 1)


def _blob(seed: int, size: int) -> bytes:
    """``size`` bytes, the same for the same seed (the test checks they arrive unchanged)."""
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


async def started(url: str) -> ClusterEngine:
    engine = ClusterEngine(url, TOKEN)
    await engine.start()
    return engine


@pytest.mark.timeout(120)
@pytest.mark.parametrize("megabytes", [2, 8, 20])
async def test_results_of_real_sizes_arrive_whole(megabytes):
    async with SizedCluster() as cluster:
        cluster.answers = {"big": megabytes * MB}
        engine = await started(cluster.url)
        try:
            previews: list[int] = []
            request = DraftRequest("a harbour at dusk", seed=40, width=1024, height=1024, count=4)
            handle = await engine.submit(
                request, user="a", job_id="big", on_progress=lambda p: previews.append(len(p.preview or b""))
            )
            result = await asyncio.wait_for(handle.result(), 90)
            assert [image.png for image in result.images] == [_blob(s, megabytes * MB // 4) for s in request.seeds]
            assert sum(len(image.png) for image in result.images) == megabytes * MB
            assert previews == [150_000]
        finally:
            await engine.close()


def png_of_10_mib(seed: int) -> bytes:
    """A real PNG of noise, stored uncompressed: just over 10 MiB (Discord's upload limit)."""
    side = 1871  # 1871 x 1871 x 3 bytes of pixels > 10 MiB
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    assert buffer.tell() >= 10 * MIB
    return buffer.getvalue()


@pytest.mark.timeout(120)
async def test_a_request_carrying_five_10_mib_images_arrives_whole():
    images = [png_of_10_mib(seed) for seed in range(5)]
    inner = DraftRequest("inner", seed=2, init=ImageInit(images[0]), reference=images[1], steps=2, strength=0.5)
    outer = DraftRequest("outer", seed=3, init=DraftInit(inner, 0), reference=images[2], steps=2, strength=0.5)
    request = FinalRequest("edit", seed=3, init=DraftInit(outer, 0), reference=images[3], mask=images[4])
    async with SizedCluster() as cluster:
        engine = await started(cluster.url)
        try:
            handle = await engine.submit(request, user="a", job_id="heavy")
            await asyncio.wait_for(handle.result(), 90)
            assert cluster.received["heavy"] == request
        finally:
            await engine.close()


FRIENDLY = "The engine cluster sent an answer this bot cannot read"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("answer", ["garbage", "oversize", "ndjson"])
async def test_a_garbled_stream_fails_the_job_with_a_sentence_not_an_exception(answer):
    async with SizedCluster() as cluster:
        cluster.answers = {"bad": answer}
        engine = await started(cluster.url)
        try:
            handle = await engine.submit(FinalRequest("owl", seed=1), user="a", job_id="bad")
            with pytest.raises(JobFailed) as failed:
                await asyncio.wait_for(handle.result(), 30)
            message = str(failed.value)
            assert message.startswith(FRIENDLY), message
            for raw in ("Error", "Exception", "bytes", "{", "<", "\\x"):
                assert raw not in message, message
            ok = await engine.submit(FinalRequest("owl", seed=2), user="a", job_id="fine")
            assert (await asyncio.wait_for(ok.result(), 30)).images[0].seed == 2  # only that job failed
        finally:
            await engine.close()


@pytest.mark.timeout(60)
async def test_a_truncated_stream_is_a_lost_worker_retried_once():
    async with SizedCluster() as cluster:
        cluster.answers = {"cut": "truncated"}
        engine = await started(cluster.url)
        try:
            handle = await engine.submit(FinalRequest("owl", seed=1), user="a", job_id="cut")
            with pytest.raises(JobFailed) as failed:
                await asyncio.wait_for(handle.result(), 30)
            assert str(failed.value) == WORKER_LOST_TWICE
            assert cluster.arrivals == ["cut", "cut"]  # the same job id, once more
        finally:
            await engine.close()


@pytest.mark.timeout(60)
async def test_a_job_over_the_clusters_limit_fails_with_a_sentence():
    async with SizedCluster() as cluster:
        cluster.max_body = 1000  # as the ingress does past wire.MAX_FRAME_BYTES
        engine = await started(cluster.url)
        try:
            small = io.BytesIO()
            Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(small, "PNG")
            request = DraftRequest("from a photo", seed=1, init=ImageInit(small.getvalue()), steps=2, strength=0.5)
            handle = await engine.submit(request, user="a", job_id="huge")
            with pytest.raises(JobFailed) as failed:
                await asyncio.wait_for(handle.result(), 30)
            assert str(failed.value) == TOO_LARGE
        finally:
            await engine.close()


def _post(headers: dict[str, str], body: bytes):
    from starlette.requests import Request as HttpRequest

    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(k.lower().encode(), v.encode()) for k, v in {"authorization": f"Bearer {TOKEN}", **headers}.items()]
    scope = {"type": "http", "method": "POST", "path": "/jobs", "headers": raw, "query_string": b""}
    return HttpRequest(scope, receive)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": wire.MEDIA_TYPE, "content-length": str(2**31)}, b"", 413),  # refused before reading
        ({"content-type": "application/json"}, b'{"job_id": "x", "request": {}}', 400),  # the old wire
        ({"content-type": wire.MEDIA_TYPE}, wire.job_frame("x", DraftRequest("fox", seed=1))[:-2], 400),
        ({"content-type": wire.MEDIA_TYPE}, b"\x7f\xff\xff\xff" + b"x" * 100, 413),
    ],
    ids=["content-length", "json", "truncated", "oversize-frame"],
)
async def test_the_ingress_refuses_a_job_body_that_is_not_one_frame_within_the_limit(headers, body, status):
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    from engine.cluster.ingress import Ingress
    from engine.cluster.serve_app import Scaling

    ingress = Ingress(
        None,  # type: ignore[arg-type]  # no worker is reached: the body is refused first
        None,  # type: ignore[arg-type]
        token=TOKEN,
        offer={},
        draft_scaling=Scaling(),
        final_scaling=Scaling(),
        draft_images_per_replica=2,
    )
    response = await ingress(_post(headers, body))
    assert response.status_code == status
