"""Inpainting and outpainting in the engine: masks are respected, pans keep the old image (canvases: tests/core)."""

from __future__ import annotations

import numpy as np
import pytest

from core.canvas import outpaint, region_mask
from engine.api import JobFailed
from engine.requests import FinalRequest, ImageInit, RequestError
from tests.images import png_of, test_image

from .conftest import pixels


def run(engine, request, user="u"):
    return engine.submit(request, user=user).future.result(timeout=180)


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
    out = inpaint(shared_engine, test_image(), region_mask(512, 512, 0, 0, 50, 100), model=model)  # the left half
    assert out.shape == (512, 512, 3)
    diff = np.abs(out - pixels(test_image())).mean(axis=-1)
    kept, painted = diff[:, 312:].mean(), diff[:, :200].mean()  # away from the feathered edge at x = 256
    assert kept < 2, f"{model} changed the area the mask keeps ({kept:.1f})"
    assert painted > 10, f"{model} did not repaint the masked area ({painted:.1f})"


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


def test_pan_right_end_to_end_keeps_the_old_image_on_the_left(shared_engine):
    canvas = outpaint(test_image(512, 512), pan="right", budget=512 * 512)
    out = inpaint(shared_engine, canvas.image, canvas.mask, width=canvas.width, height=canvas.height)
    assert out.shape == (canvas.height, canvas.width, 3)
    before = pixels(canvas.image)
    diff = np.abs(out - before).mean(axis=-1)
    third = canvas.width // 3
    assert diff[:, :third].mean() < 2  # the original stays, on the left
    assert diff[:, -third // 2 :].mean() > 5  # the new strip on the right was painted
