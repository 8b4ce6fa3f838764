"""Image reference on the tiny preset: a tiny IP-Adapter in h94/IP-Adapter's layout, through load_ip_adapter."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.addons import reference as reference_mod
from engine.addons.reference import (
    ReferenceAdapter,
    ReferenceImageError,
    ip_adapter_scales,
    load_reference_image,
    reference_batch_key,
    style_scale,
)

from .conftest import draft


def picture(seed: int) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(48, 48, 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def adapter(addon_settings) -> ReferenceAdapter:
    return ReferenceAdapter(addon_settings)


@pytest.fixture(scope="module")
def plain(turbo_pipe) -> np.ndarray:
    return draft(turbo_pipe)


def test_reference_changes_the_image_and_unloading_restores_it(adapter, turbo_pipe, plain):
    with adapter.applied(turbo_pipe, picture(0), weight=1.0) as extra:
        assert adapter.is_attached(turbo_pipe) and turbo_pipe.image_encoder is not None
        first = draft(turbo_pipe, **extra)
    with adapter.applied(turbo_pipe, picture(1), weight=1.0) as extra:
        second = draft(turbo_pipe, **extra)
    assert np.abs(first - plain).mean() > 0.005
    assert np.abs(first - second).mean() > 0.001  # the result follows the reference, not just the adapter
    assert not adapter.is_attached(turbo_pipe) and turbo_pipe.image_encoder is None
    assert np.array_equal(draft(turbo_pipe), plain)  # a job without reference after one with it


def test_weight_zero_gives_the_original(adapter, turbo_pipe, plain):
    with adapter.applied(turbo_pipe, picture(0), weight=0.0) as extra:
        assert np.array_equal(draft(turbo_pipe, **extra), plain)


def test_style_only_sets_fewer_layers_than_full(adapter, turbo_pipe, plain):
    with adapter.applied(turbo_pipe, picture(0), weight=0.8) as extra:
        full_scales = ip_adapter_scales(turbo_pipe.unet)
        full = draft(turbo_pipe, **extra)
    with adapter.applied(turbo_pipe, picture(0), weight=0.8, mode="style") as extra:
        style_scales = ip_adapter_scales(turbo_pipe.unet)
        style = draft(turbo_pipe, **extra)
    active_full = {name for name, scale in full_scales.items() if scale}
    active_style = {name for name, scale in style_scales.items() if scale}
    assert len(active_full) == len(full_scales) == 4  # every cross-attention of the tiny UNet
    assert active_style == {"up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor"}
    assert style_scales["up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor"] == pytest.approx(0.8)
    assert np.abs(style - plain).mean() > 0.001
    assert np.abs(style - full).mean() > 0.001


def test_style_scale_follows_the_unet_layout(turbo_pipe):
    assert style_scale(turbo_pipe.unet, 0.5) == {"up": {"block_0": [0.0, 0.5]}}  # tiny: two attentions

    class Block:
        attentions = [object(), object(), object()]

    class SdxlLike:
        up_blocks = [Block()]

    assert style_scale(SdxlLike(), 0.5) == {"up": {"block_0": [0.0, 0.5, 0.0]}}  # InstantStyle on SDXL


def test_bad_inputs_get_clear_errors(adapter, turbo_pipe, plain):
    with pytest.raises(ReferenceImageError, match="not an image"):
        load_reference_image(b"GIF89a but not really")
    with pytest.raises(ReferenceImageError, match="empty"):
        load_reference_image(b"")
    with pytest.raises(ReferenceImageError, match="out of range"):
        with adapter.applied(turbo_pipe, picture(0), weight=5.0):
            pass
    assert not adapter.is_attached(turbo_pipe)  # a refused job leaves nothing behind
    assert np.array_equal(draft(turbo_pipe), plain)


def test_reference_image_loads_and_keys_batches():
    buffer = io.BytesIO()
    picture(3).save(buffer, format="PNG")
    image = load_reference_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (48, 48)
    assert reference_batch_key(image, 0.5, "full") == reference_batch_key(picture(3), 0.5, "full")
    assert reference_batch_key(image, 0.5, "full") != reference_batch_key(picture(4), 0.5, "full")
    assert reference_batch_key(image, 0.5, "full") != reference_batch_key(image, 0.5, "style")
    assert reference_batch_key(None, 0.0, "full") == ()


def test_missing_gives_one_line(addon_settings, tmp_path):
    assert reference_mod.missing(addon_settings) is None
    assert reference_mod.missing(addon_settings.replace(reference_model="")) is None
    line = reference_mod.missing(addon_settings.replace(reference_model=str(tmp_path)))
    assert "lacks sdxl_models/" in line and "\n" not in line


def test_a_model_the_adapter_does_not_fit_gets_a_clear_error(adapter, tiny_cache_dir):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from engine.tiny import tiny_root

    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        tiny_root(tiny_cache_dir) / "sdxl-refiner", use_safetensors=True
    )
    refiner.set_progress_bar_config(disable=True)
    start = picture(5).resize((64, 64))

    def refine() -> np.ndarray:
        import torch

        return refiner("a cat", image=start, strength=0.5, num_inference_steps=2, output_type="np",
                       generator=torch.Generator().manual_seed(2)).images[0]

    before = refine()
    with pytest.raises(ReferenceImageError, match="does not fit"):
        with adapter.applied(refiner, picture(0), weight=1.0):
            pass
    assert not adapter.is_attached(refiner)
    assert np.array_equal(refine(), before)


def test_the_adapter_is_read_once_and_its_idle_encoder_leaves_the_device(
    addon_settings, turbo_pipe, plain, monkeypatch
):
    import diffusers.loaders.ip_adapter as diffusers_ip_adapter
    import safetensors
    from transformers import CLIPVisionModelWithProjection

    weight_reads: list[str] = []
    encoder_loads: list[str] = []

    def counting(real):
        def safe_open(path, *args, **kwargs):
            if str(path).endswith(addon_settings.reference_weight_name):
                weight_reads.append(str(path))
            return real(path, *args, **kwargs)

        return safe_open

    monkeypatch.setattr(safetensors, "safe_open", counting(safetensors.safe_open))
    monkeypatch.setattr(diffusers_ip_adapter, "safe_open", counting(diffusers_ip_adapter.safe_open))
    real_load = CLIPVisionModelWithProjection.from_pretrained.__func__

    def load_encoder(cls, *args, **kwargs):
        encoder_loads.append(str(args[0]))
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(CLIPVisionModelWithProjection, "from_pretrained", classmethod(load_encoder))
    now = [1000.0]
    adapter = ReferenceAdapter(addon_settings.replace(reference_encoder_idle_s=60.0), clock=lambda: now[0])
    images = []
    for seed in (0, 1):
        with adapter.applied(turbo_pipe, picture(seed), weight=1.0) as extra:
            images.append(draft(turbo_pipe, **extra))
        now[0] += 10
    assert len(weight_reads) == 1 and len(encoder_loads) == 1  # two jobs, one read of each
    assert not np.array_equal(images[0], images[1])
    assert adapter.resident and not adapter.is_attached(turbo_pipe) and turbo_pipe.image_encoder is None

    now[0] += 49  # 59 s idle since the last job
    assert not adapter.release_idle() and adapter.resident
    now[0] += 1
    assert adapter.release_idle() and not adapter.resident
    assert {str(p.device) for p in adapter.image_encoder(None).parameters()} == {"cpu"}
    assert not adapter.release_idle()  # nothing left to move

    with adapter.applied(turbo_pipe, picture(0), weight=1.0) as extra:  # back on the device, nothing read again
        assert np.array_equal(draft(turbo_pipe, **extra), images[0])
    assert len(weight_reads) == 1 and len(encoder_loads) == 1 and adapter.resident
    assert adapter.release() and not adapter.resident  # out of memory: at once
    assert np.array_equal(draft(turbo_pipe), plain)
