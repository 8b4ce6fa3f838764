"""Upscale 2x on the tiny preset: a tiny Real-ESRGAN through spandrel, Lanczos, creative feathered tiles."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from engine.addons import upscale as upscale_mod
from engine.addons.upscale import UpscaleError, Upscaler, tile_starts


def smooth_picture(width: int = 128, height: int = 96) -> Image.Image:
    """Colour gradients and soft waves, different in each channel (a channel swap would show)."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    rgb = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.2 + 0.6 * y, 0.9 - 0.7 * x * y], axis=-1)
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8))


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def shrunk(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image.resize(size, Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def upscaler(addon_settings) -> Upscaler:
    return Upscaler(addon_settings.replace(upscaler_tile=64), device="cpu")  # several tiles on small pictures


class CountingModel:
    """The loaded spandrel model, counting its calls (one per tile)."""

    def __init__(self, model):
        self.real, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __call__(self, patch):
        self.calls += 1
        return self.real(patch)


class Stop(Exception):
    pass


@pytest.fixture
def counted(addon_settings) -> tuple[Upscaler, CountingModel]:
    fresh = Upscaler(addon_settings.replace(upscaler_tile=64), device="cpu")
    model = CountingModel(fresh.load())
    fresh._model = model
    return fresh, model


def test_subtle_with_the_esrgan_model_is_twice_the_size_and_close_to_its_source(upscaler):
    source = smooth_picture()
    big = upscaler.subtle(source)
    assert upscaler.name() == "ESRGAN x4"  # the tiny Real-ESRGAN file, detected by spandrel
    assert big.size == (256, 192) and big.mode == "RGB"
    assert psnr(shrunk(big, source.size), source) > 35


def test_esrgan_tiles_join_exactly(addon_settings, upscaler):
    source = smooth_picture()
    whole = Upscaler(addon_settings.replace(upscaler_tile=1024)).subtle(source)
    tiled = upscaler.subtle(source)  # 64 px input tiles: 2x2 of them here
    assert np.abs(np.asarray(whole, dtype=int) - np.asarray(tiled, dtype=int)).max() <= 1


def test_each_x4_tile_brought_to_2x_is_what_resizing_the_whole_x4_picture_gives(upscaler):
    import torch

    model = upscaler.load()
    rng = np.random.default_rng(7)  # noise: a resize without the neighbours' context shows at every tile edge
    source = Image.fromarray(rng.integers(0, 256, (70, 100, 3), dtype=np.uint8))  # tiles of 64 do not divide it
    with torch.inference_mode():
        x4 = model(torch.from_numpy(np.asarray(source, dtype=np.float32).transpose(2, 0, 1).copy() / 255)[None])
    x4 = Image.fromarray(np.round(x4[0].clamp(0, 1).numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
    whole = x4.resize((200, 140), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(upscaler.subtle(source), dtype=int) - np.asarray(whole, dtype=int)).max() <= 1


def test_subtle_reports_every_tile_and_stops_after_the_tile_whose_report_raises(counted):
    upscaler, model = counted
    seen: list[tuple[int, int]] = []
    upscaler.subtle(smooth_picture(), on_tile=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and model.calls == 4  # 128x96 in 64 px tiles

    def stop_at_two(done: int, total: int) -> None:
        if done == 2:
            raise Stop()

    model.calls = 0
    with pytest.raises(Stop):
        upscaler.subtle(smooth_picture(), on_tile=stop_at_two)
    assert model.calls == 2


def test_creative_counts_the_model_tiles_first_and_stops_there_before_any_redraw(counted):
    upscaler, model = counted
    fake = DriftingImg2Img()
    seen: list[tuple[int, int]] = []
    upscaler.creative(smooth_picture(128, 64), fake, prompt_kwargs={"prompt": "x"}, seed=1,
                      on_tile=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]  # 2 model tiles, then 3 redrawn tiles
    assert model.calls == 2 and len(fake.calls) == 3

    def stop_at_one(done: int, total: int) -> None:
        raise Stop()

    fake.calls.clear()
    model.calls = 0
    with pytest.raises(Stop):
        upscaler.creative(smooth_picture(128, 64), fake, prompt_kwargs={"prompt": "x"}, seed=1, on_tile=stop_at_one)
    assert model.calls == 1 and fake.calls == []


def test_lanczos_stands_in_without_a_model(addon_settings):
    lanczos = Upscaler(addon_settings.replace(upscaler_model=""))
    source = smooth_picture(100, 60)
    big = lanczos.subtle(source)
    assert lanczos.name() == "Lanczos"
    assert big.size == (200, 120)
    assert psnr(shrunk(big, source.size), source) > 35
    assert upscale_mod.missing(addon_settings.replace(upscaler_model="")) is None


def test_a_file_that_is_no_upscaler_is_refused(addon_settings, tmp_path):
    import torch

    path = tmp_path / "nothing.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(UpscaleError, match="nothing.safetensors"):
        Upscaler(addon_settings.replace(upscaler_model=str(path))).subtle(smooth_picture())
    absent = addon_settings.replace(upscaler_model=str(tmp_path / "absent.safetensors"))
    line = upscale_mod.missing(absent)
    assert "Lanczos stands in" in line and "\n" not in line
    fallback = Upscaler(absent)
    assert fallback.subtle(smooth_picture(40, 24)).size == (80, 48) and fallback.name() == "Lanczos"


def test_tile_starts_cover_with_overlap():
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(256, 128, 32) == [0, 64, 128]
    assert tile_starts(2048, 1024, 128) == [0, 512, 1024]
    for length in (200, 256, 1000, 2048, 2049):
        starts = tile_starts(length, 128, 32)
        assert starts[0] == 0 and starts[-1] + 128 == length
        assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:], strict=False))


class DriftingImg2Img:
    """Stands in for an img2img pass whose tiles drift in tone, each tile by its own amount.

    That drift (a redraw that comes out a little brighter or darker per tile) is what makes tile
    seams visible in a real creative upscale; the tiny random UNet makes noise instead, in which
    no seam could be measured.
    """

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, *, image, strength, num_inference_steps, generator, output_type, **kwargs):
        self.calls.append(image.size)
        shift = (len(self.calls) * 37) % 60 - 30
        out = np.clip(np.asarray(image, dtype=np.float32) + shift, 0, 255).astype(np.uint8)
        return SimpleNamespace(images=[Image.fromarray(out)])


TILE_EDGES = [64, 128, 192]  # 256 px in tiles of 128 at 0, 64, 128: where a tile begins or ends inside


def seam_ratio(image: Image.Image, columns: list[int]) -> float:
    """Largest horizontal step across the given columns, over the typical step elsewhere."""
    steps = np.abs(np.diff(np.asarray(image, dtype=np.float32), axis=1)).mean(axis=(0, 2))
    at_seams = max(steps[c - 1] for c in columns)
    return float(at_seams / (np.median(steps) + 1e-3))


def test_creative_tiles_leave_no_seam(upscaler):
    fake = DriftingImg2Img()
    result = upscaler.creative(smooth_picture(128, 64), fake, prompt_kwargs={"prompt": "x"}, seed=1)
    assert result.size == (256, 128)
    assert len(fake.calls) == 3 and set(fake.calls) == {(128, 128)}  # starts 0, 64, 128; one row
    assert seam_ratio(result, TILE_EDGES) < 3.0


def test_the_seam_measure_sees_a_hard_paste(upscaler, monkeypatch):
    monkeypatch.setattr(upscale_mod, "feather_weights", lambda h, w, *ramps: np.ones((h, w, 1), np.float32))
    result = upscaler.creative(smooth_picture(128, 64), DriftingImg2Img(), prompt_kwargs={"prompt": "x"}, seed=1)
    assert seam_ratio(result, TILE_EDGES) > 10.0


def test_creative_with_the_tiny_img2img_pipeline(upscaler, turbo_pipe):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(turbo_pipe)
    img2img.set_progress_bar_config(disable=True)
    source = smooth_picture(96, 64)
    kwargs = {"prompt": "a watercolour", "guidance_scale": 0.0}
    seen: list[tuple[int, int]] = []
    first = upscaler.creative(source, img2img, prompt_kwargs=kwargs, seed=5, on_tile=lambda i, n: seen.append((i, n)))
    again = upscaler.creative(source, img2img, prompt_kwargs=kwargs, seed=5)
    assert first.size == (192, 128)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]  # the model's 2 tiles (96x64 in 64), 2 redrawn (192x128 in 128)
    assert np.array_equal(np.asarray(first), np.asarray(again))  # seeded: a repeat gives the same picture
    assert np.abs(np.asarray(first, dtype=float) - np.asarray(upscaler.subtle(source), dtype=float)).mean() > 1
    with pytest.raises(UpscaleError, match="no step"):
        upscaler.creative(source, img2img, prompt_kwargs=kwargs, seed=5, steps=1, strength=0.3)
