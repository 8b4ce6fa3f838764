"""The add-ons in float16 on a CUDA GPU (what only a GPU can show: dtypes, devices). Skipped elsewhere."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.addons.describe import Describer
from engine.addons.lora import LoraChoice, LoraLibrary
from engine.addons.reference import ReferenceAdapter
from engine.addons.upscale import Upscaler

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_pipe(tiny_cache_dir):
    from diffusers import StableDiffusionXLPipeline

    from engine.tiny import tiny_root

    pipe = StableDiffusionXLPipeline.from_pretrained(
        tiny_root(tiny_cache_dir) / "turbo", use_safetensors=True, dtype=torch.float16
    ).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cuda_draft(pipe, **kwargs) -> np.ndarray:
    out = pipe("a red cat", num_inference_steps=1, guidance_scale=0.0, height=128, width=128,
               generator=torch.Generator("cuda").manual_seed(1), output_type="np", **kwargs)
    return out.images[0]


def test_lora_and_reference_in_float16(addon_settings, cuda_pipe):
    plain = cuda_draft(cuda_pipe)
    library = LoraLibrary(addon_settings)
    with library.applied(cuda_pipe, [LoraChoice("tiny-ink", 1.0), LoraChoice("tiny-glow", 0.5)], model="turbo"):
        with_lora = cuda_draft(cuda_pipe)
    assert np.isfinite(with_lora).all() and np.abs(with_lora - plain).mean() > 0.002
    assert np.array_equal(cuda_draft(cuda_pipe), plain)
    reference = ReferenceAdapter(addon_settings)
    picture = Image.fromarray((np.random.RandomState(0).rand(48, 48, 3) * 255).astype("uint8"))
    with reference.applied(cuda_pipe, picture, weight=1.0, mode="style") as extra:
        assert cuda_pipe.image_encoder.dtype == torch.float16
        with_reference = cuda_draft(cuda_pipe, **extra)
    assert np.isfinite(with_reference).all() and np.abs(with_reference - plain).mean() > 0.001
    assert np.array_equal(cuda_draft(cuda_pipe), plain)


def test_upscaler_and_describe_on_cuda(addon_settings):
    upscaler = Upscaler(addon_settings, device="cuda")
    source = Image.fromarray((np.random.RandomState(1).rand(96, 128, 3) * 255).astype("uint8"))
    big = upscaler.subtle(source)
    assert big.size == (256, 192)
    assert next(upscaler.load().model.parameters()).device.type == "cuda"
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    suggestions = Describer(addon_settings, device="cuda").describe(buffer.getvalue())
    assert len(set(suggestions)) == len(suggestions) >= 3
