"""Images the safety tests make: a shaded nude figure NudeNet flags, and a landscape it does not."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _sphere(canvas: np.ndarray, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
    """A lit sphere: the shading is what makes the detector see a body, not a flat disc."""
    height, width, _ = canvas.shape
    yy, xx = np.mgrid[0:height, 0:width]
    dx, dy = (xx - cx) / r, (yy - cy) / r
    inside = dx * dx + dy * dy <= 1
    z = np.sqrt(np.clip(1 - dx * dx - dy * dy, 0, 1))
    shade = np.clip(0.45 + 0.55 * (0.8 * z - 0.175 * dx + 0.225 * dy), 0.2, 1.1)
    for channel in range(3):
        canvas[..., channel] = np.where(inside, np.clip(color[channel] * shade, 0, 255), canvas[..., channel])


def nude_figure(size: int = 512) -> bytes:
    """A torso with exposed breasts, drawn from shaded spheres (NudeNet: FEMALE_BREAST_EXPOSED about 0.6)."""
    skin, nipple = (225, 170, 140), (150, 85, 75)
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[:] = (30, 30, 30)
    _sphere(canvas, size / 2, size * 0.62, size * 0.48, skin)
    for cx in (0.36, 0.64):
        _sphere(canvas, size * cx, size * 0.5, size * 0.15, skin)
    for cx in (0.38, 0.62):
        _sphere(canvas, size * cx, size * 0.53, size * 0.025, nipple)
    return _png(Image.fromarray(canvas.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)))


def landscape(size: int = 512) -> bytes:
    """Sky over green hills."""
    canvas = np.zeros((size, size, 3), np.float32)
    rows = np.linspace(0, 1, size)[:, None]
    canvas[..., 0] = 90 + 60 * rows
    canvas[..., 1] = 140 + 40 * rows
    canvas[..., 2] = 220 - 40 * rows
    xx = np.arange(size)[None, :]
    hill = (size * 0.6 + 30 * np.sin(xx / 40.0)).astype(int)
    below = np.arange(size)[:, None] >= hill
    canvas[below] = (60, 130, 60)
    return _png(Image.fromarray(canvas.astype(np.uint8)))
