"""Uploaded images are untrusted: formats, sizes, bombs, orientation, masks."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.attachments import check_declared, normalize_image, normalize_mask
from core.limits import Refusal


def encoded(fmt: str, size=(100, 80), color=(200, 30, 30), mode="RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt, **save)
    return buf.getvalue()


def decoded(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    img.load()
    return img


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_become_plain_rgb_png(fmt):
    img = decoded(normalize_image(encoded(fmt)))
    assert img.mode == "RGB" and img.size == (100, 80)
    r, g, b = img.getpixel((50, 40))
    assert r > 150 and g < 80 and b < 80


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_refused_by_name(fmt):
    with pytest.raises(Refusal, match="not a PNG, JPEG, WebP image"):
        normalize_image(encoded(fmt))


def test_garbage_empty_and_truncated_files_are_refused():
    with pytest.raises(Refusal, match="not a PNG"):
        normalize_image(b"<html>hello</html>")
    with pytest.raises(Refusal, match="empty"):
        normalize_image(b"")
    whole = encoded("PNG", size=(300, 300))
    with pytest.raises(Refusal, match="damaged or cut short"):
        normalize_image(whole[: len(whole) // 2])


def test_size_limits():
    with pytest.raises(Refusal, match="limit is 1 MiB"):
        normalize_image(b"\x89PNG" + b"0" * (2 * 2**20), max_bytes=2**20)
    with pytest.raises(Refusal, match="limit is 1 megapixels"):
        normalize_image(encoded("PNG", size=(1200, 1000)), max_pixels=1_000_000)
    with pytest.raises(Refusal, match="at least 64"):
        normalize_image(encoded("PNG", size=(10, 500)))
    with pytest.raises(Refusal, match="limit is 10 MiB"):
        check_declared(filename="big.png", size=20 * 2**20, content_type="image/png")
    with pytest.raises(Refusal, match="not an image"):
        check_declared(filename="a.pdf", size=1000, content_type="application/pdf")
    check_declared(filename="a.png", size=1000, content_type="image/png")


def test_a_decompression_bomb_is_refused_without_decoding(monkeypatch):
    # A small file whose header claims more pixels than Pillow's guard allows.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = encoded("PNG", size=(200, 200))  # 40,000 px: 40x the guard
    with pytest.raises(Refusal, match="too many pixels"):
        normalize_image(bomb)
    warn_only = encoded("PNG", size=(40, 40))  # 1,600 px: over the guard but under twice it (a warning)
    with pytest.raises(Refusal, match="too many pixels"):
        normalize_image(warn_only)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (120, 80), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    out = decoded(normalize_image(buf.getvalue()))
    assert out.size == (80, 120)
    assert "exif" not in out.info


def test_transparency_is_flattened_on_white():
    out = decoded(normalize_image(encoded("PNG", mode="RGBA", color=(0, 0, 0, 0))))
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_masks_become_black_and_white_and_an_all_black_one_is_refused():
    mask = Image.new("L", (100, 100), 0)
    mask.paste(200, (50, 0, 100, 100))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    out = decoded(normalize_mask(buf.getvalue()))
    assert out.mode == "L" and out.getpixel((75, 50)) == 255 and out.getpixel((25, 50)) == 0
    with pytest.raises(Refusal, match="all black"):
        normalize_mask(encoded("PNG", color=(0, 0, 0)))
    # Transparent areas are "keep": a white brush on a transparent layer marks what to repaint.
    layer = Image.new("RGBA", (100, 100), (255, 255, 255, 0))
    layer.paste((255, 255, 255, 255), (0, 0, 30, 30))
    buf = io.BytesIO()
    layer.save(buf, format="PNG")
    out = decoded(normalize_mask(buf.getvalue()))
    assert out.getpixel((10, 10)) == 255 and out.getpixel((80, 80)) == 0


@pytest.mark.parametrize(("size", "expected"), [((8000, 5000), (2048, 1280)), ((4032, 3024), (2048, 1536))])
def test_big_uploads_are_shrunk_to_2048_a_side_the_same_way_for_image_and_mask(size, expected):
    jpeg = decoded(normalize_image(encoded("JPEG", size=size, quality=80)))
    png = decoded(normalize_image(encoded("PNG", size=size)))
    mask = decoded(normalize_mask(encoded("PNG", size=size, color=(255, 255, 255))))
    assert jpeg.size == png.size == mask.size == expected
    r, g, b = jpeg.getpixel((100, 100))
    assert r > 150 and g < 80 and b < 80


def test_small_uploads_keep_their_size():
    assert decoded(normalize_image(encoded("JPEG", size=(2048, 600)))).size == (2048, 600)
