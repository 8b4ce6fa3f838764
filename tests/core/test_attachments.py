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


def decoded(data: bytes, fmt: str = "JPEG") -> Image.Image:
    """A normalized upload: a picture is a JPEG, a mask a PNG."""
    img = Image.open(io.BytesIO(data))
    assert img.format == fmt
    img.load()
    return img


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_become_plain_rgb_jpeg(fmt):
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
    with pytest.raises(Refusal, match="limit for this kind of image is 1 megapixels"):
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
    out = decoded(normalize_mask(buf.getvalue()), "PNG")
    assert out.mode == "L" and out.getpixel((75, 50)) == 255 and out.getpixel((25, 50)) == 0
    with pytest.raises(Refusal, match="all black"):
        normalize_mask(encoded("PNG", color=(0, 0, 0)))
    # Transparent areas are "keep": a white brush on a transparent layer marks what to repaint.
    layer = Image.new("RGBA", (100, 100), (255, 255, 255, 0))
    layer.paste((255, 255, 255, 255), (0, 0, 30, 30))
    buf = io.BytesIO()
    layer.save(buf, format="PNG")
    out = decoded(normalize_mask(buf.getvalue()), "PNG")
    assert out.getpixel((10, 10)) == 255 and out.getpixel((80, 80)) == 0


@pytest.mark.parametrize(
    ("size", "png_size", "expected"),
    [((8000, 5000), (4096, 2560), (2048, 1280)), ((4032, 3024), (4032, 3024), (2048, 1536))],
)
def test_big_uploads_are_shrunk_to_2048_a_side_the_same_way_for_image_and_mask(size, png_size, expected):
    jpeg = decoded(normalize_image(encoded("JPEG", size=size, quality=80)))
    png = decoded(normalize_image(encoded("PNG", size=png_size)))
    mask = decoded(normalize_mask(encoded("PNG", size=png_size, color=(255, 255, 255))), "PNG")
    assert jpeg.size == png.size == mask.size == expected
    r, g, b = jpeg.getpixel((100, 100))
    assert r > 150 and g < 80 and b < 80


def test_small_uploads_keep_their_size():
    assert decoded(normalize_image(encoded("JPEG", size=(2048, 600)))).size == (2048, 600)


def test_a_photo_with_exif_gps_is_stored_without_any_metadata():
    """Members' EXIF (camera, GPS position) never reaches the store: only the pixels are re-encoded."""
    img = Image.new("RGB", (300, 200), (10, 120, 200))
    exif = img.getexif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 128, comment=b"home")
    assert Image.open(io.BytesIO(buf.getvalue())).getexif().get_ifd(0x8825)  # the upload does carry GPS
    stored = normalize_image(buf.getvalue())
    out = decoded(stored)
    assert not out.getexif() and "exif" not in out.info and "icc_profile" not in out.info
    assert "comment" not in out.info and b"PhoneMaker" not in stored and b"Exif" not in stored


def test_a_phone_photo_is_stored_in_about_a_tenth_of_the_lossless_bytes():
    """A 4032x3024 photo-like JPEG, downscaled to 2048 px: what one upload adds to the image store."""
    from tests.images import photo_array

    buf = io.BytesIO()
    Image.fromarray(photo_array(4032)[:3024]).save(buf, format="JPEG", quality=92)
    stored = normalize_image(buf.getvalue())
    assert decoded(stored).size == (2048, 1536)
    assert len(stored) < 2 * 2**20  # lossless PNG of the same pixels: about 6.3 MiB


def test_a_big_png_is_refused_on_its_header_before_it_is_decoded(monkeypatch):
    """A 100 KB single-colour 6300x6300 PNG would decode to 120 MB of pixels: refused from the header."""
    flat = encoded("PNG", size=(6300, 6300), color=(90, 90, 90))
    assert len(flat) < 300_000

    def no_decode(self, *args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decode)
    with pytest.raises(Refusal, match="6300x6300 pixels; the limit for this kind of image is 17 megapixels"):
        normalize_image(flat)
    with pytest.raises(Refusal, match="6300x6300 pixels"):
        check_declared(filename="flat.png", size=len(flat), content_type="image/png", width=6300, height=6300)
    check_declared(filename="photo.jpg", size=4_000_000, content_type="image/jpeg", width=6000, height=4000)
