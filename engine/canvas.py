"""Reading images and masks for the recipes. Torch-free (Pillow only).

A mask is an image the size of its picture: white = repaint, black = keep. The bot builds
canvases and masks itself (``core.canvas``); ``open_image`` reaches it through ``engine.api``.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from .requests import RequestError


def open_image(data: bytes, what: str = "image") -> Image.Image:
    """Decode image bytes (EXIF orientation applied) or raise :class:`RequestError` naming ``what``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise RequestError(f"The {what} is not an image I can read ({e.__class__.__name__}).") from None


def mask_image(mask: Image.Image) -> Image.Image:
    """An ``L`` mask from any mode: a mask with transparency repaints where it is white *and* opaque."""
    if mask.mode in ("RGBA", "LA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        gray = rgba.convert("L")
        alpha = rgba.getchannel("A")
        return Image.composite(gray, Image.new("L", rgba.size, 0), alpha)
    return mask.convert("L")


def upload_rgb(
    data: bytes,
    *,
    max_pixels: int,
    error: type[Exception],
    empty: str,
    too_large: str,
    unreadable: str,
) -> Image.Image:
    """Uploaded bytes as an RGB image for an add-on, or ``error`` with the message that says why not:
    ``empty``, ``too_large`` (formatted with ``size``, "WxH") past ``max_pixels``, or ``unreadable``."""
    if not data:
        raise error(empty)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise error(too_large.format(size=f"{img.width}x{img.height}"))
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise error(unreadable) from None
