"""Inpainting and outpainting: masks are respected, canvases have the right sizes, pans go the right way."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.canvas import edit_size, outpaint, region_mask
from engine.requests import FinalRequest, ImageInit, RequestError
from engine.worker import JobFailed

from .conftest import pixels


def run(engine, request, user="u"):
    return engine.submit(request, user=user).future.result(timeout=180)


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


def inpaint(engine, image: bytes, mask: bytes, width=512, height=512, **kw) -> np.ndarray:
    request = FinalRequest(
        "a bowl of fruit",
        seed=3,
        width=width,
        height=height,
        steps=4,
        init=ImageInit(image),
        mask=mask,
        strength=kw.pop("strength", 1.0),
        **kw,
    )
    (img,) = run(engine, request).images
    return pixels(img.png)


def test_inpainting_changes_the_masked_area_and_keeps_the_rest(shared_engine):
    image = test_image()
    mask = region_mask(512, 512, 25, 25, 50, 50)
    out = inpaint(shared_engine, image, mask)
    before = pixels(image)
    assert out.shape == (512, 512, 3)
    diff = np.abs(out - before).mean(axis=-1)
    inside = diff[160:352, 160:352].mean()  # well inside the masked square (128..384)
    outside = np.concatenate([diff[:96].ravel(), diff[-96:].ravel(), diff[:, :96].ravel(), diff[:, -96:].ravel()])
    assert outside.mean() < 2, outside.mean()
    assert inside > 10 * max(outside.mean(), 0.5), (inside, outside.mean())


@pytest.mark.parametrize("model", ["ssd-1b", "sdxl"])
def test_both_final_models_inpaint(shared_engine, model):
    out = inpaint(shared_engine, test_image(), region_mask(512, 512, 0, 0, 50, 100), model=model)
    assert out.shape == (512, 512, 3)


def test_a_mask_of_another_size_is_fitted_to_the_image(shared_engine):
    small = region_mask(128, 128, 50, 0, 50, 100)  # right half, at a quarter of the size
    out = inpaint(shared_engine, test_image(), small)
    diff = np.abs(out - pixels(test_image())).mean(axis=-1)
    assert diff[:, :200].mean() < 2 and diff[:, 312:].mean() > 10


def test_bytes_that_are_no_image_are_refused_at_once(shared_engine):
    with pytest.raises(RequestError, match="mask is not an image"):
        shared_engine.submit(
            FinalRequest("x", seed=1, width=512, height=512, init=ImageInit(test_image()), mask=b"not a png"), user="u"
        )
    with pytest.raises(RequestError, match="start image is not an image"):
        shared_engine.submit(
            FinalRequest("x", seed=1, width=512, height=512, init=ImageInit(b"GIF89a-nope"), mask=test_image()),
            user="u",
        )
    with pytest.raises(RequestError, match="needs an image"):
        FinalRequest("x", seed=1, mask=test_image()).validate()


def test_a_black_mask_fails_with_a_clear_message(shared_engine):
    black = png_of(np.zeros((512, 512, 3)))
    with pytest.raises(JobFailed, match="nothing to repaint"):
        inpaint(shared_engine, test_image(), black)


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


def test_pan_right_end_to_end_keeps_the_old_image_on_the_left(shared_engine):
    canvas = outpaint(test_image(512, 512), pan="right", budget=512 * 512)
    out = inpaint(shared_engine, canvas.image, canvas.mask, width=canvas.width, height=canvas.height)
    assert out.shape == (canvas.height, canvas.width, 3)
    before = pixels(canvas.image)
    diff = np.abs(out - before).mean(axis=-1)
    third = canvas.width // 3
    assert diff[:, :third].mean() < 2  # the original stays, on the left
    assert diff[:, -third // 2 :].mean() > 5  # the new strip on the right was painted


def test_bad_outpaint_arguments_are_refused():
    with pytest.raises(RequestError, match="not offered"):
        outpaint(test_image(), zoom=3.0)
    with pytest.raises(RequestError, match="Unknown pan direction"):
        outpaint(test_image(), pan="sideways")
    with pytest.raises(RequestError, match="not an image"):
        outpaint(b"\x89PNG broken", zoom=2.0)
    with pytest.raises(RequestError, match="past the image"):
        region_mask(100, 100, 60, 0, 50, 10)
