"""Test pictures with structure (not flat colours), as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_image(width: int = 512, height: int = 512) -> bytes:
    """Smooth, structured colours: left half warm, right half cool, a gradient down."""
    y, x = np.mgrid[0:height, 0:width]
    r = np.where(x < width // 2, 220, 40)
    g = 60 + 120 * y / height
    b = np.where(x < width // 2, 40, 210)
    return png_of(np.stack([r, g, b], axis=-1))


test_image.__test__ = False  # a helper, not a test
