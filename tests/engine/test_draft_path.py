"""The draft path on first contact with a GPU (issue 19, items 3 and 5): a safe CUDA default (explicit graphs,
compile opt-in, an eager fallback per module, captures while idle) and the CPU side of a draft (the gather
window, PNG level and threads, encode time). CUDA is absent here: graphs are faked where a capture would run."""

from __future__ import annotations

import concurrent.futures
import io
import logging
import struct
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.models import ModelRegistry
from engine.output import encode_png
from engine.queue import QueuedJob, lane_of
from engine.recipes.graphed import idle_shapes
from engine.requests import DraftRequest, FinalRequest
from engine.settings import EngineSettings
from engine.worker_loop import WorkerJob, WorkerLoop

from .conftest import pixels, tiny_settings

SIDE = 256
BROKEN_BACKEND_CALLS: list[int] = []  # compiles tried by the failing backend (registered once per process)


def draft(prompt: str, seed: int, count: int = 1, side: int = SIDE) -> DraftRequest:
    return DraftRequest(prompt, seed, width=side, height=side, count=count)


class FakeGraphs:
    """CudaGraphs without CUDA: a new input shape is a counted "capture", then ``fn`` runs; ``fail`` raises instead."""

    instances: list[FakeGraphs] = []
    fail = False

    def __init__(self, fn, name: str, module=None, warmup: int = 2):
        self.fn, self.name, self.module = fn, name, module
        self.shapes: list[tuple] = []
        self.attempts = 0
        FakeGraphs.instances.append(self)

    def check(self) -> bool:
        """The weights never move here (engine.graphs.CudaGraphs.check drops the graphs when they do)."""
        return False

    def __call__(self, *tensors):
        key = tuple(tuple(t.shape) for t in tensors)
        if key not in self.shapes:
            self.attempts += 1
            if self.fail:
                raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
            self.shapes.append(key)
        return self.fn(*tensors)


@pytest.fixture
def fake_graphs(monkeypatch):
    FakeGraphs.instances = []
    monkeypatch.setattr("engine.recipes.drafts.CudaGraphs", FakeGraphs)
    monkeypatch.setattr(FakeGraphs, "fail", False)
    return FakeGraphs


# ---- 3. a safe CUDA default -----------------------------------------------------------------------------------


def test_on_cuda_explicit_graphs_are_the_default_and_compile_is_opt_in(tiny_cache_dir):
    settings = EngineSettings.from_env({})
    assert settings.compile is None and not settings.compile_on("cuda") and not settings.compile_on("cpu")
    cuda = ModelRegistry(tiny_settings(tiny_cache_dir, device="cuda"), "cuda", torch.float16, "resident")
    assert cuda.graphs and not cuda.compiled
    opted = EngineSettings.from_env({"ENGINE_COMPILE": "true"})
    assert opted.compile_on("cuda") and opted.compile_on("cpu")
    registry = ModelRegistry(tiny_settings(tiny_cache_dir, compile=True), "cuda", torch.float16, "resident")
    assert registry.compiled and not registry.graphs  # compile's reduce-overhead records its own graphs
    assert not EngineSettings.from_env({"ENGINE_COMPILE": "auto"}).compile_on("cuda")


def test_a_failing_graph_capture_runs_that_module_eagerly_with_one_log_line(make_engine, fake_graphs, caplog):
    engine, eager = make_engine(), make_engine()
    engine.registry.graphs = True  # as on CUDA; the fake capture raises
    fake_graphs.fail = True
    recipes = engine.recipes
    recipes.capture_in_jobs = True  # as in the cluster's replicas (the local worker captures while idle)
    with caplog.at_level(logging.ERROR, logger="engine.recipes.graphed"):
        for seed in (1, 2):
            got = recipes.drafts([draft("a lighthouse", seed)])[0][0]
            want = eager.recipes.drafts([draft("a lighthouse", seed)])[0][0]
            assert np.abs(np.asarray(got, np.float32) - np.asarray(want, np.float32)).max() <= 1
        recipes.drafts([draft("a lighthouse", 4, count=3)])  # another bucket: still no capture tried
    assert sorted(g.name for g in fake_graphs.instances) == ["Turbo UNet", "draft decoder"]
    assert [g.attempts for g in fake_graphs.instances] == [1, 1]  # tried once per module, never again
    lines = [r.getMessage() for r in caplog.records if "ENGINE_CUDA_GRAPHS" in r.getMessage()]
    assert len(lines) == 2 and all("runs eagerly" in line for line in lines), lines


def test_a_failing_compile_runs_eagerly_with_one_log_line_and_the_draft_arrives(make_engine, caplog):
    from torch._dynamo import list_backends, register_backend

    calls = BROKEN_BACKEND_CALLS
    calls.clear()
    if "issue19_broken" not in list_backends(exclude_tags=()):

        @register_backend(name="issue19_broken")
        def broken(gm, example_inputs):  # what a missing Triton or a compiler bug looks like to dynamo
            BROKEN_BACKEND_CALLS.append(1)
            raise RuntimeError("Cannot find a working triton installation")

    torch._dynamo.reset()
    engine = make_engine(compile=True, compile_backend="issue19_broken", compile_models="turbo", draft_decoder="full")
    eager = make_engine(draft_decoder="full")
    assert engine.registry.compiled
    with caplog.at_level(logging.ERROR, logger="engine.models"):
        first = engine.submit(draft("a red kite", 5), user="u").future.result(timeout=300)
        tried = len(calls)
        second = engine.submit(draft("a red kite", 6), user="u").future.result(timeout=300)
    assert tried >= 1 and len(calls) == tried  # the second draft compiled nothing
    want = eager.submit(draft("a red kite", 5), user="u").future.result(timeout=300)
    assert np.abs(pixels(first.images[0].png) - pixels(want.images[0].png)).max() <= 1
    assert pixels(second.images[0].png).std() > 1
    lines = [r.getMessage() for r in caplog.records if "ENGINE_COMPILE=false" in r.getMessage()]
    assert len(lines) == 1 and "UNet2DConditionModel" in lines[0], lines


def test_a_job_in_the_worker_never_captures_and_its_shape_is_captured_next_while_idle(make_engine, fake_graphs):
    engine = make_engine(max_batch_images=1)  # the idle plan: 8 aspects at 512 px, bucket 1
    engine.registry.graphs = True
    recipes = engine.recipes
    run = engine.submit(draft("a pier", 1), user="u").future.result(timeout=120)
    assert len(run.images) == 1 and recipes.capture_in_jobs is False
    # The job ran eagerly (no capture in front of it); the worker captures its shape first once idle.
    for _ in range(1200):
        if fake_graphs.instances and all(g.shapes for g in fake_graphs.instances):
            break
        threading.Event().wait(0.05)
    unet = next(g for g in fake_graphs.instances if g.name == "Turbo UNet")
    assert unet.shapes[0][0] == (1, 4, SIDE // 8, SIDE // 8)  # the job's 256 px shape, before the 512 px plan
    engine.submit(draft("a pier", 2), user="u").future.result(timeout=120)
    assert unet.shapes.count(unet.shapes[0]) == 1  # replayed, not captured again


def test_shapes_jobs_ran_eagerly_come_first_in_the_idle_plan_once_each(make_engine, fake_graphs):
    engine = make_engine(max_batch_images=1)
    engine.registry.graphs = True
    recipes = engine.recipes
    recipes.capture_in_jobs = False  # as the worker sets it
    for prompt in ("a", "b", "c"):  # three jobs of one shape: one capture wanted, not three
        recipes.drafts([draft(prompt, 1)])
    left = recipes.idle_captures_left()
    assert left[0] == (1, SIDE, SIDE, "a") and [s for s in left if s[1:3] == (SIDE, SIDE)] == [left[0]]
    assert left[1:] == [(1, w, h, "warm-up") for _, w, h in idle_shapes(1, compiled=False)]
    recipes.capture_draft_shape(left[0])
    recipes.warm_up_drafts()  # a benchmark's warm-up: 512 px 1:1 is done for the idle plan too
    assert recipes.next_idle_capture() == left[2]
    unet = next(g for g in fake_graphs.instances if g.name == "Turbo UNet")
    captured = list(unet.shapes)
    recipes.drafts([draft("d", 2)])
    assert unet.shapes == captured and recipes.idle_captures_left()[0] == left[2]  # replayed: nothing new wanted


def test_graphs_dropped_because_the_weights_moved_are_captured_again_while_idle(make_engine, fake_graphs):
    """CudaGraphs.check() drops graphs whose module's weights moved (offload, a LoRA's refuse): the next jobs run
    eagerly, not a capture in front of a member's job, and the idle plan captures those shapes again."""
    engine = make_engine(max_batch_images=1)
    engine.registry.graphs = True
    recipes = engine.recipes
    recipes.capture_in_jobs = False  # as the worker sets it
    recipes.drafts([draft("a", 1)])
    shape = recipes.idle_captures_left()[0]
    recipes.capture_draft_shape(shape)
    assert shape not in recipes.idle_captures_left()
    unet = next(g for g in fake_graphs.instances if g.name == "Turbo UNet")
    attempts = unet.attempts
    unet.check = lambda: True  # the weights moved: CudaGraphs dropped every graph
    unet.shapes.clear()
    recipes.drafts([draft("a", 2)])
    assert unet.attempts == attempts  # ran eagerly: no capture inside the job
    assert shape in recipes.idle_captures_left()  # wanted again while idle


class FakeRecipes:
    """What the worker asks of the recipes while idle: the capture plan of the real ``idle_shapes``."""

    def __init__(self, on_capture):
        self.plan = iter(idle_shapes(16, compiled=False))
        self.captured: list[tuple] = []
        self.on_capture = on_capture
        self.capture_in_jobs = True

    def next_idle_capture(self):
        shape = next(self.plan, None)
        return None if shape is None else (*shape, "warm-up")

    def capture_draft_shape(self, shape):
        self.captured.append(shape[:3])
        self.on_capture(len(self.captured))


class FakeRegistry:
    graphs, compiled, device = True, False, "cuda"

    class placement:  # noqa: N801 (engine.placement.Placement's flag: Turbo is on the device)
        drafts_away = False

    def loaded_names(self):
        return ["turbo"]


def worker_with(recipes, **changes) -> WorkerLoop:
    loop = WorkerLoop(EngineSettings.for_preset("tiny", device="cpu", **changes))
    loop._registry, loop._recipes = FakeRegistry(), recipes  # type: ignore[assignment]
    return loop


def queue(loop: WorkerLoop, request, user: str = "u") -> WorkerJob:
    job = WorkerJob(f"job-{len(loop._jobs)}", user, request, concurrent.futures.Future(), None)
    with loop._lock:
        loop._jobs[job.job_id] = job
        loop._queue.push(QueuedJob(job.job_id, user, lane_of(request), request, payload=job))
        loop._wake.notify()
    return job


def test_idle_captures_go_one_shape_at_a_time_common_first_and_a_job_waits_for_one_at_most():
    loop: WorkerLoop
    arrived: list[WorkerJob] = []
    arrive_at = {3, 9}  # a member's draft arrives during the third capture, another during the ninth

    def on_capture(n: int) -> None:
        if n in arrive_at:
            arrived.append(queue(loop, draft("a gull", n)))

    recipes = FakeRecipes(on_capture)
    loop = worker_with(recipes)
    assert loop._next_batch() == arrived[:1]  # served right after the capture in progress, not after the plan
    assert recipes.captured == [(1, 512, 512), (2, 512, 512), (4, 512, 512)]
    loop._running = []
    assert loop._next_batch() == arrived[1:]
    # Every bucket at 1:1, then the other aspects up to 4 images (bigger batches are captured when seen).
    assert recipes.captured[3:] == [(8, 512, 512), (16, 512, 512), (1, 576, 448), (2, 576, 448), (4, 576, 448),
                                    (1, 448, 576)]
    plan = list(idle_shapes(16, compiled=False))
    assert len(plan) == 5 + 7 * 3 and list(idle_shapes(16, compiled=True)) == plan[:5]


# ---- 5. the CPU side of a draft ---------------------------------------------------------------------------------


class CountingCondition(threading.Condition):
    """The worker's condition, counting the gather window's waits (the decision, not wall time)."""

    def __init__(self, lock):
        super().__init__(lock)
        self.timed_waits: list[float] = []

    def wait(self, timeout=None):
        if timeout is not None:
            self.timed_waits.append(timeout)
        return super().wait(timeout)


def gathering_worker(**changes) -> tuple[WorkerLoop, CountingCondition]:
    loop = worker_with(FakeRecipes(lambda n: None), gather_ms=50, **changes)
    loop._registry = None  # nothing to do while idle
    loop._wake = CountingCondition(loop._lock)
    return loop, loop._wake


def test_a_lone_draft_on_an_idle_engine_starts_without_the_gather_window():
    loop, wake = gathering_worker()
    job = queue(loop, draft("a heron", 1))
    assert loop._next_batch() == [job]
    assert wake.timed_waits == [] and loop.lone_drafts == 1


def test_the_gather_window_is_waited_when_another_draft_waits_or_the_worker_was_busy():
    loop, wake = gathering_worker()
    a, b = queue(loop, draft("a heron", 1)), queue(loop, draft("an egret", 2))
    assert loop._next_batch() == [a, b]  # a burst under way: it waits for more
    assert len(wake.timed_waits) >= 1 and 0 < wake.timed_waits[0] <= 0.05
    loop._running = []
    c = queue(loop, draft("a stork", 3))
    loop._busy_until = c.submitted_at + 1  # c came while the GPU ran a batch: more may be on their way
    wake.timed_waits.clear()
    assert loop._next_batch() == [c]
    assert len(wake.timed_waits) >= 1 and loop.lone_drafts == 0


def zlib_level_class(png: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header: 0 for level 1, 1 for 2-5, 2 for 6, 3 for 7-9."""
    pos = 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            return png[pos + 9] >> 6
        pos += 12 + length
    raise AssertionError("no IDAT")


def test_drafts_are_written_at_zlib_level_1_finals_at_4_and_both_report_encode_time(shared_engine):
    d = shared_engine.submit(draft("a wren", 1, count=2), user="u").future.result(timeout=120)
    f = shared_engine.submit(FinalRequest("a wren", 1, width=SIDE, height=SIDE, steps=2), user="u").future.result(120)
    assert [zlib_level_class(i.png) for i in d.images] == [0, 0]
    assert zlib_level_class(f.images[0].png) == 1
    image = Image.open(io.BytesIO(d.images[0].png))
    assert image.info["parameters"].startswith("a wren")
    assert zlib_level_class(encode_png(image, "p", 9)) == 3  # the check reads the level
    for result in (d, f):
        assert result.timings["encode"] > 0 and "run" in result.timings, result.timings


def test_encoder_threads_default_to_the_cpu_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 12)
    assert EngineSettings().encode_threads == 12
    assert EngineSettings.from_env({"ENGINE_ENCODE_THREADS": "3"}).encode_threads == 3
    loop = WorkerLoop(EngineSettings.from_env({"ENGINE_ENCODE_THREADS": "3"}))
    assert loop._encoder._max_workers == 3
