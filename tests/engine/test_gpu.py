"""Checks that only mean something on a CUDA GPU: float16, offloading, memory. Skipped elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from engine.requests import DraftInit, DraftRequest, FinalRequest
from engine.settings import EngineSettings
from engine.worker import Engine

from .conftest import compiled_matches_eager, pixels

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("memory", ["resident", "offload"])
def test_drafts_and_finals_in_float16(tiny_cache_dir, memory):
    settings = EngineSettings.for_preset("tiny", cache_dir=tiny_cache_dir, device="cuda", memory=memory)
    engine = Engine(settings).start()
    try:
        assert engine.wait_ready(300)
        draft = DraftRequest("a red fox", seed=1, count=4)
        drafts = engine.submit(draft, user="u").future.result(timeout=300)
        assert [pixels(i.png).shape for i in drafts.images] == [(512, 512, 3)] * 4
        for model in ("ssd-1b", "sdxl"):
            final = FinalRequest("a red fox", seed=2, model=model, init=DraftInit(draft, 1), steps=4)
            result = engine.submit(final, user="u").future.result(timeout=300)
            image = pixels(result.images[0].png)
            assert image.shape == (1024, 1024, 3) and np.isfinite(image).all()
        assert engine.health()["memory"] == memory
    finally:
        engine.shutdown(30)


def test_same_seed_same_image_on_the_gpu(tiny_cache_dir):
    settings = EngineSettings.for_preset("tiny", cache_dir=tiny_cache_dir, device="cuda", preload=False)
    engine = Engine(settings).start()
    try:
        a, b = (engine.submit(DraftRequest("a castle", seed=9, count=1), user="u").future.result(300) for _ in "ab")
        assert np.abs(pixels(a.images[0].png) - pixels(b.images[0].png)).max() <= 1
    finally:
        engine.shutdown(30)


def test_cuda_graphs_per_bucket_make_the_same_drafts_as_eager(tiny_cache_dir):
    def engine_with(**changes):
        settings = EngineSettings.for_preset(
            "tiny", cache_dir=tiny_cache_dir, device="cuda", preload=False, compile=False, **changes
        )
        return Engine(settings).start()

    graphed, eager = engine_with(cuda_graphs=True), engine_with(cuda_graphs=False)
    try:
        assert graphed.registry.graphs and not eager.registry.graphs
        for n in (1, 3, 4, 1):  # 3 runs padded to the bucket of 4: two graphs per module in all
            requests = [DraftRequest(f"a fox, take {i}", seed=20 + i, count=1) for i in range(n)]
            with graphed.recipes.capturing():  # as the worker's idle captures do (its jobs never capture)
                got = graphed.recipes.drafts(requests)
            want = eager.recipes.drafts(requests)
            for g, w in zip(got, want, strict=True):
                assert np.abs(np.asarray(g[0], np.float32) - np.asarray(w[0], np.float32)).mean() <= 1.0
        assert sorted(g.captures for g in graphed.recipes._graphs.values()) == [2, 2]
    finally:
        graphed.shutdown(30)
        eager.shutdown(30)


def test_inductor_compiled_drafts_match_eager_on_cuda(make_engine):
    """Inductor's kernels (what ENGINE_COMPILE builds on CUDA): the same pixels as eager within float noise,
    and no recompile across the buckets once each ran."""
    import torch

    torch._dynamo.reset()
    compiled_matches_eager(make_engine, "inductor", (1, 2, 4), tol=1.0, side=512, device="cuda")


@pytest.mark.parametrize("fuse_qkv", [False, True], ids=["unfused", "fused"])
def test_cuda_graphs_after_lora_and_reference_jobs_make_the_same_drafts_as_eager(tiny_cache_dir, fuse_qkv):
    """A LoRA or reference job between plain drafts must leave every weight where the graphs read it
    (unverified until a GPU has run it)."""
    import io

    from PIL import Image

    from engine.addons.tiny import ensure_tiny_addons

    ensure_tiny_addons(tiny_cache_dir)

    def engine_with(**changes):
        settings = EngineSettings.for_preset(
            "tiny", cache_dir=tiny_cache_dir, device="cuda", preload=False, compile=False, fuse_qkv=fuse_qkv, **changes
        )
        return Engine(settings).start()

    buffer = io.BytesIO()
    Image.fromarray((np.random.RandomState(4).rand(40, 40, 3) * 255).astype("uint8")).save(buffer, format="PNG")
    graphed, eager = engine_with(cuda_graphs=True), engine_with(cuda_graphs=False)
    try:
        requests = [DraftRequest(f"a fox, take {i}", seed=20 + i, count=1) for i in range(4)]
        first = graphed.recipes.drafts(requests)  # captured here
        for craft in ({"loras": (("tiny-ink", 1.0),)}, {"reference": buffer.getvalue()}):
            job = DraftRequest("a fox", seed=3, count=1, **craft)
            graphed.recipes.drafts([job])
            eager.recipes.drafts([job])
        got, want = graphed.recipes.drafts(requests), eager.recipes.drafts(requests)
        for g, w, f in zip(got, want, first, strict=True):
            assert np.abs(np.asarray(g[0], np.float32) - np.asarray(w[0], np.float32)).mean() <= 1.0
            assert np.array_equal(np.asarray(g[0]), np.asarray(f[0]))  # the same graphs, the same pixels
        assert [g.drops for g in graphed.recipes._graphs.values()] == [0, 0]  # no weight moved
    finally:
        graphed.shutdown(30)
        eager.shutdown(30)


def test_the_reference_image_encoder_leaves_the_gpu_after_its_idle_time(tiny_cache_dir):
    from engine.addons.tiny import ensure_tiny_addons

    ensure_tiny_addons(tiny_cache_dir)
    settings = EngineSettings.for_preset("tiny", cache_dir=tiny_cache_dir, device="cuda", preload=False)
    engine = Engine(settings).start()
    try:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(buffer, format="PNG")
        pixels_png = buffer.getvalue()
        engine.submit(DraftRequest("a fox", seed=3, count=1, reference=pixels_png), user="u").future.result(300)
        reference = engine.recipes.reference_adapter()
        assert reference.encoder_device().startswith("cuda")
        idle = reference.settings.reference_encoder_idle_s
        assert not reference.release_idle(reference.clock() + idle / 2)
        assert reference.release_idle(reference.clock() + idle + 1)
        assert reference.encoder_device() == "cpu"
    finally:
        engine.shutdown(30)


def test_offload_keeps_a_1024px_ssd1b_final_within_7_5_gb_on_an_8gb_card():
    """ENGINE_MEMORY=offload with the published architectures (random fp16 weights, built once under the
    cache dir as benchmarks/gpu.sh builds them) on an 8 GiB card emulated with
    ``set_per_process_memory_fraction``: peak reserved memory plus the CUDA context of a 1024 px SSD-1B
    final stays within 7.5 GB (engine.memory plans about 3.5 GB), and drafts after it (graphs captured
    again) are the drafts of before."""
    import gc

    import torch

    from benchmarks.folders import build_random

    root = build_random("full", EngineSettings().cache_dir, 0.02, "cuda")
    gc.collect()
    torch.cuda.empty_cache()
    settings = EngineSettings.for_preset("sdxl").replace(
        device="cuda", memory="offload", preload=False, final_model="ssd-1b", max_batch_images=4,
        turbo_model=str(root / "turbo"), ssd1b_model=str(root / "ssd-1b"),
        draft_vae_model=str(root / "taesdxl"), vae_model=str(root / "vae-fp16-fix"),
    )  # fmt: skip
    free, total = torch.cuda.mem_get_info()
    context = total - free - torch.cuda.memory_reserved()
    torch.cuda.set_per_process_memory_fraction((8 * 2**30 - context) / total)
    engine = Engine(settings).start()
    try:
        draft = DraftRequest("a lighthouse at dusk", seed=5, count=1)
        torch.cuda.reset_peak_memory_stats()
        before = engine.recipes.drafts([draft])[0]
        draft_peak = torch.cuda.max_memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        final = engine.recipes.final(FinalRequest("a lighthouse at dusk", seed=6, model="ssd-1b", steps=4))
        torch.cuda.synchronize()
        final_peak = torch.cuda.max_memory_reserved()
        free, total = torch.cuda.mem_get_info()
        context = max(context, total - free - torch.cuda.memory_reserved())
        after = engine.recipes.drafts([draft])[0]
        print(f"offload, 8 GiB emulated: context {context / 1e9:.2f} GB, draft peak reserved "
              f"{draft_peak / 1e9:.2f} GB, 1024 px SSD-1B final peak reserved {final_peak / 1e9:.2f} GB")  # fmt: skip
        assert final.images[0].size == (1024, 1024)
        assert final_peak + context <= 7.5e9
        assert np.abs(np.asarray(before[0], np.float32) - np.asarray(after[0], np.float32)).max() <= 1
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        engine.shutdown(30)
