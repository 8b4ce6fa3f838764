"""ENGINE_TINY_DETAIL=photo: the tiny preset's PNGs are as large as real ones on every local path
(drafts, finals, upscales, live previews), the same bytes for the same seed, and real models never get it.
The cluster's replicas encode through the same function (tests/cluster runs with photo)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.detail import AMPLITUDE, detail_of, photo_detail, preview_detail_of
from engine.requests import DraftRequest, FinalRequest, UpscaleRequest
from engine.settings import EngineSettings

from .conftest import pixels

MB = 1_000_000
# Real SDXL output (docs: shared notes "real sizes"): a 512 px draft 0.3-0.5 MB of PNG, a 1024 px
# final 1.2-2.5 MB, a 2x upscale of a 512 px image about as large as a final.
DRAFT_MIN, FINAL_MIN = 0.3 * MB, 1.2 * MB
PREVIEW_MIN = 60_000  # a 256 px preview of a photograph is about 0.1 MB


@pytest.fixture
def tiny_addons(tiny_cache_dir):
    from engine.addons.tiny import ensure_tiny_addons

    ensure_tiny_addons(tiny_cache_dir)


def test_drafts_finals_upscales_and_previews_are_real_sized_and_the_same_for_a_seed(make_engine, tiny_addons):
    engine = make_engine(tiny_detail="photo", preview_every=1)
    request = DraftRequest("a castle on a hill", seed=500, width=512, height=512, count=4)
    drafts = engine.submit(request, user="u", job_id="d1").future.result(timeout=300).images
    sizes = [len(image.png) for image in drafts]
    assert min(sizes) >= DRAFT_MIN, sizes
    again = engine.submit(request, user="u", job_id="d2").future.result(timeout=300).images
    assert [image.png for image in again] == [image.png for image in drafts]  # deterministic for the seed
    assert len({image.png for image in drafts}) == 4
    # Only a grain: the picture is the recipe's own, within AMPLITUDE levels per channel.
    (plain,) = engine.recipes.drafts([request])
    difference = np.abs(pixels(drafts[2].png) - np.asarray(plain[2], np.float32))
    assert difference.max() <= AMPLITUDE and difference.mean() > 1.0

    previews: list[bytes] = []
    final_request = FinalRequest("a castle on a hill", seed=501)
    final = engine.submit(
        final_request, user="u", job_id="f", on_progress=lambda p: p.preview and previews.append(p.preview)
    ).future.result(timeout=300)
    (image,) = final.images
    assert (image.width, image.height) == (1024, 1024) and len(image.png) >= FINAL_MIN, len(image.png)
    assert previews and min(len(p) for p in previews) >= PREVIEW_MIN, [len(p) for p in previews]

    upscale = UpscaleRequest(drafts[0].png, mode="subtle", seed=7)
    (upscaled,) = engine.submit(upscale, user="u", job_id="u").future.result(timeout=300).images
    assert (upscaled.width, upscaled.height) == (1024, 1024) and len(upscaled.png) >= FINAL_MIN, len(upscaled.png)


def test_noise_is_the_default_and_only_the_tiny_preset_ever_gets_detail(tiny_cache_dir):
    tiny = EngineSettings.for_preset("tiny", cache_dir=tiny_cache_dir)
    assert tiny.tiny_detail == "noise" and detail_of(tiny) is None and preview_detail_of(tiny) is None
    assert detail_of(tiny.replace(tiny_detail="photo")) is photo_detail
    real = EngineSettings.for_preset("sdxl", cache_dir=tiny_cache_dir, tiny_detail="photo")
    assert detail_of(real) is None and preview_detail_of(real) is None
    assert EngineSettings.from_env({"ENGINE_PRESET": "tiny", "ENGINE_TINY_DETAIL": "Photo"}).tiny_detail == "photo"


def test_the_grain_depends_on_seed_and_index_only():
    flat = Image.new("RGB", (64, 48), (0, 128, 255))
    a = photo_detail(flat, 5, 0)
    assert a.tobytes() == photo_detail(flat, 5, 0).tobytes()
    assert a.tobytes() != photo_detail(flat, 5, 1).tobytes() != photo_detail(flat, 6, 0).tobytes()
    grain = np.asarray(a, np.int16) - np.asarray(flat, np.int16)
    assert np.abs(grain).max() <= AMPLITUDE and (grain[..., 0] >= 0).all() and (grain[..., 2] <= 0).all()
    assert len(_png(a)) > 10 * len(_png(flat))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
