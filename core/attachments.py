"""Images people upload are untrusted: check them before anything else sees them.

Only PNG, JPEG and WebP are accepted, under a byte limit and a pixel limit (Pillow's
decompression-bomb guard is raised to an error, never a warning); EXIF orientation is applied,
animation is reduced to its first frame, transparency is flattened on white, and the result is
re-encoded, with no metadata carried over (EXIF, GPS, ICC, text chunks): a picture as a JPEG of quality
90 (a photo at 2048 px is about 1 MB, against 6-11 MB as lossless PNG: this is what the image store keeps),
a mask as a PNG (a mask must stay exact). Torch-free: the cogs call it.

The pixel limits are checked on the header, before anything is decoded: a PNG or WebP is decoded at
full size (4 bytes a pixel and more), so it may have fewer pixels than a JPEG, which is decoded at a
reduced scale straight away.

Every refusal is a :class:`core.limits.Refusal` whose text can go straight to the user.
"""

from __future__ import annotations

import io
import logging
import math
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from core.echo import quoted, shown
from core.limits import Refusal
from engine.api import MAX_SIDE

log = logging.getLogger(__name__)

ALLOWED_FORMATS: dict[str, str] = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
MAX_BYTES = 10 * 1024 * 1024  # 10 MiB: more than Discord's free upload limit
MAX_PIXELS = 40_000_000  # about 6300 x 6300 (a JPEG: decoded at 1/2 to 1/8 scale); a bomb claims far more
MAX_FULL_DECODE_PIXELS = 4096 * 4096  # a PNG or WebP, decoded whole: about 67 MB as RGBA, a fifth of a second
STORE_QUALITY = 90  # JPEG quality of a stored upload
MIN_SIDE = 64  # of an upload; MAX_SIDE (engine.api): it is shrunk to that many pixels a side, no job is bigger


def _mib(size: int) -> str:
    """``size`` in MiB, rounded up to a tenth: a file one byte over 10 MiB reads "10.1 MiB", not "10.0"."""
    return f"{math.ceil(size * 10 / 2**20) / 10:.1f} MiB"


def _formats_text() -> str:
    return ", ".join(ALLOWED_FORMATS.values())


def check_declared(
    *,
    filename: str,
    size: int,
    content_type: str | None,
    max_bytes: int = MAX_BYTES,
    width: int | None = None,
    height: int | None = None,
) -> None:
    """Cheap checks on what Discord says about an attachment (bytes, type, pixels), before downloading it.

    The pixels Discord reports are checked again on the file's own header after the download.
    """
    if size > max_bytes:
        raise Refusal(f"{quoted(filename)} is {_mib(size)}; the limit is {max_bytes / 2**20:.0f} MiB.")
    if content_type and not content_type.startswith("image/"):
        kind = shown(content_type, 40)
        raise Refusal(f"{quoted(filename)} is not an image ({kind}); send a {_formats_text()} file.")
    if width and height:
        limit = MAX_PIXELS if content_type in ("image/jpeg", "image/jpg") else MAX_FULL_DECODE_PIXELS
        if width * height > limit:
            raise Refusal(_too_many_pixels(quoted(filename), width, height, limit))


def _too_many_pixels(name: str, width: int, height: int, limit: int) -> str:
    return f"{name} is {width}x{height} pixels; the limit for this kind of image is {limit / 1e6:.0f} megapixels."


def open_checked(
    data: bytes,
    *,
    what: str = "image",
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_full_decode_pixels: int = MAX_FULL_DECODE_PIXELS,
    max_side: int | None = None,
):
    """The decoded, upright image in ``data`` (first frame); raises :class:`Refusal` with the reason.

    With ``max_side`` the image comes back at most that many pixels a side (aspect kept); a JPEG
    is then decoded at a reduced scale straight away, which is several times faster for a photo.
    """
    if not data:
        raise Refusal(f"The {what} is empty.")
    if len(data) > max_bytes:
        raise Refusal(f"The {what} is {_mib(len(data))}; the limit is {max_bytes / 2**20:.0f} MiB.")
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as img:
                width, height = img.size  # from the header: nothing is decoded until load()
                limit = max_pixels if img.format == "JPEG" else min(max_pixels, max_full_decode_pixels)
                if width * height > limit:
                    raise Refusal(_too_many_pixels(f"The {what}", width, height, limit))
                if width < MIN_SIDE or height < MIN_SIDE:
                    raise Refusal(f"The {what} is {width}x{height} pixels; each side must be at least {MIN_SIDE}.")
                img.seek(0)  # animated WebP/PNG: the first frame
                if max_side is not None and img.format == "JPEG":
                    scale = max_side / max(width, height)
                    if scale < 1:
                        img.draft(img.mode, (max(1, round(width * scale)), max(1, round(height * scale))))
                img.load()
                upright = ImageOps.exif_transpose(img)
                if max_side is not None and max(upright.size) > max_side:
                    upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
                return upright
    except Refusal:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refusal(f"The {what} claims too many pixels to open safely.") from None
    except UnidentifiedImageError:
        raise Refusal(f"The {what} is not a {_formats_text()} image.") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        log.info("unreadable %s: %s", what, e)
        raise Refusal(f"The {what} is damaged or cut short; I could not read it.") from None


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    """``img`` as a JPEG of :data:`STORE_QUALITY` with no metadata (Pillow would carry a JPEG comment over
    from ``img.info``: it is emptied first)."""
    img.info = {}
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=STORE_QUALITY)
    return buf.getvalue()


def normalize_image(data: bytes, *, what: str = "image", max_side: int = MAX_SIDE, **limits) -> bytes:
    """JPEG bytes (quality 90) of the image in ``data``: RGB, upright, at most ``max_side`` a side,
    transparency on white, no metadata (never the uploaded bytes themselves)."""
    img = open_checked(data, what=what, max_side=max_side, **limits)
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return _jpeg(img.convert("RGB"))


def normalize_mask(data: bytes, *, max_side: int = MAX_SIDE, **limits) -> bytes:
    """A black-and-white PNG mask (white = repaint), at most ``max_side`` a side; transparent pixels count as black."""
    img = open_checked(data, what="mask", max_side=max_side, **limits)
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        gray = Image.composite(rgba.convert("L"), Image.new("L", rgba.size, 0), rgba.getchannel("A"))
    else:
        gray = img.convert("L")
    gray = gray.point(lambda v: 255 if v >= 128 else 0)
    if gray.getbbox() is None:
        raise Refusal("The mask is all black: paint the area to change in white.")
    return _png(gray)


def image_size(data: bytes) -> tuple[int, int]:
    """The (width, height) of PNG, JPEG or WebP bytes, from the header."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size
