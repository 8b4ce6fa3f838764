"""Fixtures for the add-on tests: tiny add-ons beside the tiny pipelines, a tiny Turbo pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.addons.settings import AddonSettings


@pytest.fixture(scope="session")
def addon_settings(tiny_cache_dir) -> AddonSettings:
    """Every add-on on, with the tiny random weights (built once per cache)."""
    from engine.addons.tiny import ensure_tiny_addons

    ensure_tiny_addons(tiny_cache_dir)
    return AddonSettings.for_tiny(tiny_cache_dir)


@pytest.fixture(scope="module")
def turbo_pipe(tiny_cache_dir):
    """The tiny Turbo pipeline, loaded through from_pretrained as the engine loads real weights."""
    from diffusers import StableDiffusionXLPipeline

    from engine.tiny import tiny_root

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_root(tiny_cache_dir) / "turbo", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draft(pipe, prompt: str = "a red cat", seed: int = 1, size: int = 128, **kwargs) -> np.ndarray:
    """One small one-step draft as float pixels in [0, 1]."""
    out = pipe(
        prompt, num_inference_steps=1, guidance_scale=0.0, height=size, width=size,
        generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs,
    )
    return out.images[0]
