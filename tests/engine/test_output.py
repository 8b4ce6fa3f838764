"""Image files: parameters travel inside the PNG; large files shrink to fit an upload limit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.output import encode_png, fit_to_limit, parameters_text, read_parameters


def noise_png(size: int = 512) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return encode_png(img, "a fox\nSteps: 1, Seed: 5")


def test_parameters_chunk_round_trips():
    text = parameters_text(
        prompt="a fox", negative_prompt="blurry", steps=28, guidance=7, seed=42, width=1024, height=1024, model="ssd-1b"
    )
    assert text.splitlines() == [
        "a fox",
        "Negative prompt: blurry",
        "Steps: 28, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 1024x1024, Model: SSD-1B",
    ]
    img = Image.new("RGB", (64, 64))
    assert read_parameters(encode_png(img, text)) == text


def test_fit_to_limit_keeps_a_png_that_fits():
    png = noise_png(64)
    assert fit_to_limit(png, len(png)) == (png, "png")


def test_fit_to_limit_shrinks_to_a_decodable_smaller_file():
    png = noise_png(512)
    limit = len(png) // 2
    data, ext = fit_to_limit(png, limit)
    assert ext in ("webp", "jpg") and len(data) <= limit
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (512, 512)


def test_fit_to_limit_refuses_an_impossible_limit():
    with pytest.raises(ValueError, match="does not fit"):
        fit_to_limit(noise_png(256), 100)
