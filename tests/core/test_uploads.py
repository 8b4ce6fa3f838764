"""Results larger than an upload limit shrink to a WebP or JPEG that fits (core.uploads)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.uploads import fit_to_limit
from engine.output import encode_png


def noise_png(size: int = 512) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return encode_png(img, "a fox\nSteps: 1, Seed: 5")


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
