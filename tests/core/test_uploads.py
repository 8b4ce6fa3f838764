"""Results larger than an upload limit shrink to a WebP or JPEG that fits (core.uploads)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.delivery import DEFAULT_UPLOAD_LIMIT, fit_files
from core.uploads import fit_to_limit
from engine.output import encode_png
from tests.images import photo_array

PARAMETERS = (
    "a lighthouse at dusk, café terrace, 🌊 spray, watercolor painting, soft pastel colours\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 6, Sampler: Euler a, CFG scale: 1.5, Seed: 1234567, Size: 2048x2048, Model: ssd-1b, Upscale: 2x"
)


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


def user_comment(data: bytes) -> str | None:
    """The parameters as A1111 reads them from a JPEG or WebP: EXIF UserComment (tag 0x9286 in the Exif IFD),
    decoded as piexif's ``UserComment.load`` does (an 8-byte charset prefix, then UTF-16 big-endian text)."""
    with Image.open(io.BytesIO(data)) as img:
        raw = img.getexif().get_ifd(0x8769).get(0x9286)
    if raw is None:
        return None
    assert raw[:8] == b"UNICODE\0"
    return raw[8:].decode("utf_16_be")


@pytest.fixture(scope="module")
def upscale_png() -> bytes:
    """A 2048 px upscale as big as a real one gets: photo-like grain, over Discord's 10 MiB."""
    png = encode_png(Image.fromarray(photo_array(2048, noise=24)), PARAMETERS)
    assert len(png) > DEFAULT_UPLOAD_LIMIT
    return png


async def test_a_2048_px_upscale_past_the_upload_limit_keeps_its_parameters(upscale_png):
    [(name, data)] = await fit_files([("upscale.png", upscale_png)], DEFAULT_UPLOAD_LIMIT)
    assert name.rsplit(".", 1)[1] in ("webp", "jpg") and len(data) <= DEFAULT_UPLOAD_LIMIT
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (2048, 2048)
    assert user_comment(data) == PARAMETERS


def test_the_jpeg_fallback_keeps_the_parameters_too(upscale_png, monkeypatch):
    import core.uploads

    monkeypatch.setattr(core.uploads, "FALLBACKS", (("JPEG", "jpg"),))
    data, ext = fit_to_limit(upscale_png, DEFAULT_UPLOAD_LIMIT // 4)
    assert ext == "jpg" and len(data) <= DEFAULT_UPLOAD_LIMIT // 4
    assert user_comment(data) == PARAMETERS
