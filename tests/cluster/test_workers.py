"""The final replica's stream (engine.cluster.workers.FinalWorker.run) without Ray running: a stand-in
pipeline on a thread, the generator driven as Serve drives it, and cancelled as Serve cancels it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import types

import pytest

from engine.cluster import wire
from engine.requests import FinalRequest

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[ray]')")


class OneStepThenWait:
    """A final that reports one step, then runs until it is told to stop (at its next step)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def final(self, request, on_step, cancel):
        from engine.recipes.images import JobInterrupted

        on_step(1, 30, None)
        if cancel.wait(10):
            self.stopped.set()
            raise JobInterrupted()
        raise AssertionError("never told to stop")


@pytest.mark.timeout(30)
async def test_a_final_cancelled_while_it_runs_stops_and_leaves_no_task_pending():
    from engine.cluster.workers import FinalWorker

    worker = FinalWorker.__new__(FinalWorker)  # no models: the stream's own logic
    recipes = OneStepThenWait()
    worker.settings = types.SimpleNamespace(preview_every=0)
    worker.recipes = recipes
    worker._gpu = concurrent.futures.ThreadPoolExecutor(1)
    before = asyncio.all_tasks()
    frames = worker.run("f-1", wire.encode_request(FinalRequest("owl", seed=1, width=256, height=256)))
    first = await asyncio.wait_for(frames.__anext__(), 5)
    assert b'"progress"' in first
    waiting = asyncio.ensure_future(frames.__anext__())  # waits for the next step, as Serve's consumer does
    await asyncio.sleep(0.1)
    waiting.cancel()  # the bot closed the stream: Serve cancels the generator
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.to_thread(recipes.stopped.wait, 5)  # the pipeline stopped at its next step
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()  # was: a Queue.get task left pending ("destroyed but pending")
    worker._gpu.shutdown(wait=True)


async def test_a_draft_batch_with_one_invalid_image_fails_only_that_request_and_runs_once():
    """The replica delivers the batch's good drafts and fails the bad one alone, as the local worker does; it
    ran every request again one by one before (N times the GPU work for one NaN image)."""
    from engine.cluster.workers import DraftWorker
    from engine.recipes.images import InvalidImage, PartlyInvalid
    from engine.requests import DraftRequest

    calls: list[int] = []

    class OneBadImage:
        def drafts(self, requests):
            calls.append(len(requests))
            raise PartlyInvalid([["image a"], InvalidImage("The image came out black; try another seed."), ["image c"]])

    async def encode(request, images, steps, guidance, timings, batch_size):
        return f"result {request.prompt} {images}".encode()

    worker = DraftWorker.__new__(DraftWorker)  # no models: the batch's own logic
    worker.recipes = OneBadImage()
    worker._gpu = concurrent.futures.ThreadPoolExecutor(1)
    worker._encode = encode
    requests = [DraftRequest(p, seed=1, width=256, height=256) for p in ("a", "b", "c")]
    try:
        [(indexes, lines)] = await worker._run_group([0, 1, 2], requests, [0.0, 0.0, 0.0])
    finally:
        worker._gpu.shutdown(wait=True)
    assert calls == [3] and indexes == [0, 1, 2]
    assert lines[0].startswith(b"result a") and lines[2].startswith(b"result c")
    assert b"black" in lines[1] and not lines[1].startswith(b"result")
