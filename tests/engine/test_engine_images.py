"""What the engine makes: sizes, counts, seeds, batching, upscaling, loading and sharing."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.api import JobFailed
from engine.models import ModelMissing, ModelRegistry
from engine.output import read_parameters
from engine.requests import DraftInit, DraftRequest, FinalRequest, size_for_aspect
from engine.tiny import tiny_root

from .conftest import pixels, tiny_settings


def run(engine, request, user="u"):
    return engine.submit(request, user=user).future.result(timeout=120)


def keep_busy(engine):
    """Start a final and return once it runs, so that what is submitted next waits together."""
    handle = engine.submit(FinalRequest("busy", seed=1, steps=3), user="z")
    deadline = time.monotonic() + 60
    while engine.queue_info(handle.job_id).state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return handle


def test_loading_goes_through_from_pretrained_of_saved_folders(tiny_cache_dir):
    settings = tiny_settings(tiny_cache_dir)
    registry = ModelRegistry(settings, "cpu", torch.float32, "resident")
    folder = registry.resolve("turbo")
    assert folder == tiny_root(tiny_cache_dir) / "turbo"
    assert (folder / "model_index.json").exists() and (folder / "unet" / "config.json").exists()
    loaded = registry.get("turbo")
    assert type(loaded.text2img).__name__ == "StableDiffusionXLPipeline"
    assert loaded.text2img.vae_scale_factor == 8
    assert loaded.text2img.unet.config.in_channels == 4
    assert loaded.text2img.scheduler.config.timestep_spacing == "trailing"


def test_identical_components_are_shared_and_different_ones_are_not(tiny_cache_dir, tmp_path):
    # A copy of SSD-1B whose VAE weights differ by a little: same architecture, other content.
    other = tmp_path / "ssd-1b-other-vae"
    shutil.copytree(tiny_root(tiny_cache_dir) / "ssd-1b", other)
    weights = other / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    name = next(k for k in state if k.endswith("weight"))
    state[name] = state[name] + 0.01
    save_file(state, weights)

    registry = ModelRegistry(tiny_settings(tiny_cache_dir, ssd1b_model=str(other)), "cpu", torch.float32, "resident")
    registry.get("turbo")
    registry.get("ssd-1b")
    assert registry.shares("turbo", "ssd-1b", "text_encoder")
    assert registry.shares("turbo", "ssd-1b", "text_encoder_2")
    assert not registry.shares("turbo", "ssd-1b", "vae")
    assert not registry.shares("turbo", "ssd-1b", "unet")

    registry.get("sdxl-refiner")  # loads the base first; the refiner takes its encoder and VAE
    assert registry.shares("sdxl-base", "sdxl-refiner", "text_encoder_2")
    assert registry.shares("sdxl-base", "sdxl-refiner", "vae")


def test_missing_weights_name_the_model_and_the_fix(tiny_cache_dir):
    settings = tiny_settings(tiny_cache_dir, turbo_model="someone/not-downloaded-model")
    registry = ModelRegistry(settings, "cpu", torch.float32, "resident")
    with pytest.raises(ModelMissing, match=r"someone/not-downloaded-model.*python -m engine download"):
        registry.resolve("turbo")


def test_drafts_have_the_asked_count_size_seeds_and_parameters(shared_engine):
    result = run(shared_engine, DraftRequest("a red fox in snow", seed=100, count=3))
    assert [img.seed for img in result.images] == [100, 101, 102]
    for img in result.images:
        assert pixels(img.png).shape == (512, 512, 3)
        assert (img.width, img.height) == (512, 512)
        params = read_parameters(img.png)
        assert params.startswith("a red fox in snow\n") and f"Seed: {img.seed}," in params
    assert result.model == "turbo" and result.steps == 1 and result.guidance == 0
    assert set(result.timings) >= {"queued", "run", "encode", "total"}


def test_aspect_ratio_changes_the_image_size(shared_engine):
    w, h = size_for_aspect("16:9", 512)
    result = run(shared_engine, DraftRequest("a wide valley", seed=1, count=1, width=w, height=h))
    assert pixels(result.images[0].png).shape == (h, w, 3)
    assert w > h


@pytest.mark.parametrize("model", ["ssd-1b", "sdxl"])
def test_finals_are_1024_px(shared_engine, model):
    result = run(shared_engine, FinalRequest("a lighthouse", seed=5, model=model, steps=2))
    assert result.model == model
    (img,) = result.images
    assert pixels(img.png).shape == (1024, 1024, 3)
    assert "Seed: 5," in read_parameters(img.png)


def test_same_request_same_seed_same_image(shared_engine):
    a = run(shared_engine, DraftRequest("a castle", seed=7, count=1))
    b = run(shared_engine, DraftRequest("a castle", seed=7, count=1))
    c = run(shared_engine, DraftRequest("a castle", seed=8, count=1))
    assert np.array_equal(pixels(a.images[0].png), pixels(b.images[0].png))
    assert not np.array_equal(pixels(a.images[0].png), pixels(c.images[0].png))


def test_image_i_of_a_draft_equals_the_draft_made_alone_from_seed_plus_i(shared_engine):
    four = run(shared_engine, DraftRequest("a castle", seed=20, count=4))
    alone = run(shared_engine, DraftRequest("a castle", seed=22, count=1))
    assert np.abs(pixels(four.images[2].png) - pixels(alone.images[0].png)).max() <= 2


def test_batched_drafts_equal_drafts_made_alone(make_engine):
    engine = make_engine()
    requests = [DraftRequest(f"prompt {i}", seed=50 + 10 * i, count=2) for i in range(3)]
    alone = [run(engine, r) for r in requests]
    # A final keeps the worker busy while the drafts arrive, so they wait together and batch.
    busy = keep_busy(engine)
    handles = [engine.submit(r, user=f"user{i}") for i, r in enumerate(requests)]
    busy.future.result(timeout=120)
    batched = [h.future.result(timeout=120) for h in handles]
    assert max(r.batch_size for r in batched) == 3
    for a, b in zip(alone, batched, strict=True):
        assert [i.seed for i in a.images] == [i.seed for i in b.images]
        for ia, ib in zip(a.images, b.images, strict=True):
            assert np.abs(pixels(ia.png) - pixels(ib.png)).max() <= 2  # float noise only


def test_batches_respect_the_image_limit(make_engine):
    engine = make_engine(max_batch_images=4)
    busy = keep_busy(engine)
    handles = [engine.submit(DraftRequest("p", seed=i * 10, count=2), user=f"u{i}") for i in range(4)]
    busy.future.result(timeout=120)
    sizes = [h.future.result(timeout=120).batch_size for h in handles]
    assert max(sizes) == 2  # two requests of two images fill a batch of four


def test_upscale_keeps_the_composition_of_the_draft(shared_engine):
    draft = DraftRequest("a red fox in snow", seed=300, count=2)
    drafts = run(shared_engine, draft)
    upscaled = run(shared_engine, FinalRequest(draft.prompt, seed=301, init=DraftInit(draft, 1), strength=0.5))
    unrelated = run(shared_engine, FinalRequest(draft.prompt, seed=999))
    assert pixels(upscaled.images[0].png).shape == (1024, 1024, 3)

    def small(png):
        from PIL import Image

        img = Image.fromarray(pixels(png).astype(np.uint8)).resize((512, 512), Image.LANCZOS)
        return np.asarray(img, dtype=np.float32)

    target = pixels(drafts.images[1].png)
    near = np.abs(small(upscaled.images[0].png) - target).mean()
    far = np.abs(small(unrelated.images[0].png) - target).mean()
    assert near < far * 0.8, (near, far)


def test_sdxl_upscale_runs_base_then_refiner_on_the_draft(shared_engine):
    draft = DraftRequest("a red fox", seed=3, count=1)
    result = run(shared_engine, FinalRequest("a red fox", seed=3, model="sdxl", init=DraftInit(draft, 0), steps=4))
    assert pixels(result.images[0].png).shape == (1024, 1024, 3)
    assert "Denoising strength: 0.5" in read_parameters(result.images[0].png)


def test_a_model_that_fails_to_load_fails_only_its_jobs(make_engine, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    engine = make_engine(ssd1b_model=str(broken))
    final = engine.submit(FinalRequest("a fox", seed=1), user="u")
    with pytest.raises(JobFailed, match="ssd-1b failed to load") as failed:
        final.future.result(timeout=120)
    from core.render import internal_detail

    assert str(broken) not in str(failed.value) and not internal_detail(str(failed.value))  # the log has the detail
    drafts = run(engine, DraftRequest("a fox", seed=1, count=1))
    assert len(drafts.images) == 1
    assert "ssd-1b" in engine.health()["failed_models"]


def test_every_module_keeps_the_loading_dtype(tiny_cache_dir):
    """from_pipe casts to float32 unless told otherwise; on a GPU that doubled memory and broke the refiner."""
    registry = ModelRegistry(tiny_settings(tiny_cache_dir), "cpu", torch.bfloat16, "resident")
    for name in ("turbo", "sdxl-base", "sdxl-refiner"):
        loaded = registry.get(name)
        for pipe in (loaded.text2img, loaded.img2img):
            if pipe is None:
                continue
            for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
                module = getattr(pipe, part, None)
                if module is not None:
                    assert module.dtype == torch.bfloat16, (name, type(pipe).__name__, part, module.dtype)
