"""Canvases and masks for inpainting and outpainting, built by the bot before a job goes to the engine.

A mask is a PNG the size of its image: white = repaint, black = keep.

- :func:`outpaint` grows the canvas around an image (zoom out) or on one side (pan), marks the new
  area white in the mask (with a small overlap into the old image so the seam is repainted) and
  fills it with a blurred stretch of the image so colours continue. The canvas is then scaled to
  the model's pixel budget, sides multiples of 64, so repeated zooms and pans never grow the job.
- :func:`region_mask` makes a mask from a rectangle given in percent, for people without a mask file.
- :func:`edit_size` is the job size for an image of any size: within the budget, multiples of 64.

The engine reads masks and images with its own ``engine.canvas`` (``open_image`` comes through the door).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, ImageFilter

from engine.api import MAX_SIDE, MIN_SIDE, SIDE_STEP, RequestError, open_image

PanDirection = Literal["left", "right", "up", "down"]
PAN_DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
ZOOM_FACTORS: tuple[float, ...] = (1.5, 2.0)
PAN_GROWTH = 0.5  # a pan adds half the image's width (left/right) or height (up/down)
DEFAULT_BUDGET = 1024 * 1024  # pixels of an SDXL-family final


@dataclass(frozen=True)
class Canvas:
    """An image to inpaint and its mask (both PNG, same size), and that size."""

    image: bytes = field(repr=False)
    mask: bytes = field(repr=False)
    width: int
    height: int


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def edit_size(width: int, height: int, budget: int = DEFAULT_BUDGET, *, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """Job size for a ``width`` x ``height`` image: same aspect, about ``budget`` pixels, sides multiples of 64.

    Each side comes out between MIN_SIDE and ``max_side``: fewer pixels when the long side would pass
    ``max_side``, more when the short side would fall under MIN_SIDE. Only an image too long and thin
    for both at once is refused.
    """
    if width < 1 or height < 1:
        raise RequestError("The image has no pixels.")
    top = max_side // SIDE_STEP * SIDE_STEP
    scale = min((budget / (width * height)) ** 0.5, top / width, top / height)
    # too small a budget: grow toward MIN_SIDE, as far as the long side lets
    scale = max(scale, min(MIN_SIDE / min(width, height), top / max(width, height)))
    w = min(top, round(width * scale / SIDE_STEP) * SIDE_STEP)
    h = min(top, round(height * scale / SIDE_STEP) * SIDE_STEP)
    if w < MIN_SIDE or h < MIN_SIDE:
        raise RequestError(
            f"The image is too long and thin ({width}x{height}); each side must come to at least {MIN_SIDE} px."
        )
    return w, h


def _fill(image: Image.Image, size: tuple[int, int], box: tuple[int, int]) -> Image.Image:
    """The canvas: a heavily blurred stretch of ``image`` with ``image`` itself pasted at ``box``."""
    radius = max(8, max(size) // 16)
    back = image.resize((max(1, size[0] // 8), max(1, size[1] // 8)), Image.Resampling.BILINEAR)
    back = back.filter(ImageFilter.GaussianBlur(radius / 8)).resize(size, Image.Resampling.BILINEAR)
    back.paste(image, box)
    return back


def outpaint(
    data: bytes,
    *,
    zoom: float | None = None,
    pan: str | None = None,
    budget: int = DEFAULT_BUDGET,
    overlap: int = 16,
) -> Canvas:
    """The canvas and mask that zoom out of (``zoom`` 1.5 or 2) or pan (``pan``) the image in ``data``."""
    if (zoom is None) == (pan is None):
        raise RequestError("Outpainting needs either a zoom factor or a pan direction.")
    image = open_image(data).convert("RGB")
    w, h = image.size
    if zoom is not None:
        if zoom not in ZOOM_FACTORS:
            raise RequestError(f"Zoom out by {zoom:g} is not offered; choose {' or '.join(map(str, ZOOM_FACTORS))}.")
        cw, ch = round(w * zoom), round(h * zoom)
        box = ((cw - w) // 2, (ch - h) // 2)
        keep = (box[0] + overlap, box[1] + overlap, box[0] + w - overlap, box[1] + h - overlap)
    else:
        if pan not in PAN_DIRECTIONS:
            raise RequestError(f"Unknown pan direction {pan!r}; choose one of {', '.join(PAN_DIRECTIONS)}.")
        grow_w = round(w * PAN_GROWTH) if pan in ("left", "right") else 0
        grow_h = round(h * PAN_GROWTH) if pan in ("up", "down") else 0
        cw, ch = w + grow_w, h + grow_h
        box = (grow_w if pan == "left" else 0, grow_h if pan == "up" else 0)
        left, top, right, bottom = box[0], box[1], box[0] + w, box[1] + h
        # Only the side that meets the new strip is repainted a little, so the seam blends.
        keep = (
            left + (overlap if pan == "left" else 0),
            top + (overlap if pan == "up" else 0),
            right - (overlap if pan == "right" else 0),
            bottom - (overlap if pan == "down" else 0),
        )
    canvas = _fill(image, (cw, ch), box)
    mask = Image.new("L", (cw, ch), 255)
    mask.paste(0, keep)
    size = edit_size(cw, ch, budget)
    if (cw, ch) != size:
        canvas = canvas.resize(size, Image.Resampling.LANCZOS)
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return Canvas(png_bytes(canvas), png_bytes(mask), size[0], size[1])


def region_mask(width: int, height: int, left: float, top: float, region_width: float, region_height: float) -> bytes:
    """A mask PNG of ``width`` x ``height``: white in the rectangle given in percent of each side."""
    for name, value in (("left", left), ("top", top), ("width", region_width), ("height", region_height)):
        if not (0 <= value <= 100):
            raise RequestError(f"The region's {name} must be 0 to 100 (percent), not {value:g}.")
    if region_width <= 0 or region_height <= 0:
        raise RequestError("The region must have a width and a height above 0 percent.")
    if left + region_width > 100 or top + region_height > 100:
        raise RequestError("The region goes past the image: left + width and top + height must be at most 100.")
    x0, y0 = round(width * left / 100), round(height * top / 100)
    x1, y1 = round(width * (left + region_width) / 100), round(height * (top + region_height) / 100)
    if x1 <= x0 or y1 <= y0:
        raise RequestError("The region is smaller than a pixel.")
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (x0, y0, x1, y1))
    return png_bytes(mask)
