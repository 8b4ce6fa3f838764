"""Canvases and masks the bot builds (core.canvas): right sizes, zoom shrinks into the middle, pans go the right way."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.canvas import edit_size, outpaint, region_mask
from engine.api import RequestError
from tests.images import png_of, test_image


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"), dtype=np.float32)


@pytest.mark.parametrize(
    ("size", "zoom", "expected"),
    [((1024, 1024), 1.5, (1024, 1024)), ((1024, 1024), 2.0, (1024, 1024)), ((1344, 768), 2.0, (1344, 768))],
)
def test_zoom_out_keeps_the_size_and_shrinks_the_image_into_the_middle(size, zoom, expected):
    canvas = outpaint(test_image(*size), zoom=zoom)
    assert (canvas.width, canvas.height) == expected
    mask = pixels(canvas.mask)[..., 0]
    assert mask.shape == (expected[1], expected[0])
    h, w = mask.shape
    # The old image fills 1/zoom of each side, in the middle; the border around it is to be painted.
    kept = mask[h // 2, :] == 0
    assert abs(kept.sum() / w - 1 / zoom) < 0.06
    assert mask[0, 0] == 255 and mask[h // 2, w // 2] == 0 and mask[-1, -1] == 255


def test_canvas_sides_are_multiples_of_64_within_limits():
    for w, h in [(1024, 1024), (1344, 768), (832, 1216), (1536, 640), (300, 1000)]:
        for kwargs in [{"zoom": 1.5}, {"zoom": 2.0}] + [{"pan": d} for d in ("left", "right", "up", "down")]:
            c = outpaint(test_image(w, h), **kwargs)
            assert c.width % 64 == 0 and c.height % 64 == 0, (w, h, kwargs)
            assert 256 <= c.width <= 2048 and 256 <= c.height <= 2048
            assert c.width * c.height <= 1024 * 1024 * 1.1
    assert edit_size(4000, 3000) == (1152, 896)


@pytest.mark.parametrize(
    ("direction", "warm_side"),
    [("right", "left"), ("left", "right"), ("down", "top"), ("up", "bottom")],
)
def test_pan_puts_the_old_image_on_the_far_side_and_masks_the_new_strip(direction, warm_side):
    red = png_of(np.full((512, 512, 3), (230, 20, 20)))
    canvas = outpaint(red, pan=direction)
    if direction in ("left", "right"):
        assert canvas.width > canvas.height
    else:
        assert canvas.height > canvas.width
    image = pixels(canvas.image)
    mask = pixels(canvas.mask)[..., 0]
    h, w = mask.shape
    near = {
        "left": (slice(None), slice(0, w // 5)),
        "right": (slice(None), slice(w - w // 5, w)),
        "top": (slice(0, h // 5), slice(None)),
        "bottom": (slice(h - h // 5, h), slice(None)),
    }
    far = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[warm_side]
    assert (mask[near[warm_side]] == 0).all()  # the old image is kept where it went
    assert (mask[near[far]] == 255).all()  # the new strip is painted
    assert np.abs(image[near[warm_side]] - (230, 20, 20)).max() < 3


def test_bad_outpaint_arguments_are_refused():
    with pytest.raises(RequestError, match="not offered"):
        outpaint(test_image(), zoom=3.0)
    with pytest.raises(RequestError, match="Unknown pan direction"):
        outpaint(test_image(), pan="sideways")
    with pytest.raises(RequestError, match="not an image"):
        outpaint(b"\x89PNG broken", zoom=2.0)
    with pytest.raises(RequestError, match="past the image"):
        region_mask(100, 100, 60, 0, 50, 10)


def test_a_region_mask_is_white_inside_the_rectangle_only():
    mask = pixels(region_mask(200, 100, 25, 50, 50, 50))[..., 0]
    assert mask.shape == (100, 200)
    assert (mask[50:, 50:150] == 255).all()
    assert mask[:50].max() == 0 and mask[:, :50].max() == 0 and mask[:, 150:].max() == 0
