"""Results larger than an upload limit: the same picture as a smaller WebP or JPEG instead of failing.

The PNG's generation parameters (its ``parameters`` text chunk) go with it as EXIF UserComment (tag 0x9286 in
the Exif IFD, charset ``UNICODE`` then UTF-16 big-endian, as piexif writes it): where the A1111 web UI and
tools like it read them from a JPEG or WebP. A JPEG also keeps them as its comment, as before.
"""

from __future__ import annotations

import io

from PIL import Image

FALLBACKS: tuple[tuple[str, str], ...] = (("WEBP", "webp"), ("JPEG", "jpg"))  # (Pillow format, extension)
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286
_MAX_COMMENT_CHARS = 30_000  # UTF-16 in one EXIF segment, which a JPEG caps at 64 KiB


def user_comment_exif(parameters: str) -> bytes:
    """EXIF holding ``parameters`` as UserComment, ready for Pillow's ``save(exif=...)``."""
    exif = Image.Exif()
    text = parameters[:_MAX_COMMENT_CHARS]
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + text.encode("utf_16_be", "replace")
    return exif.tobytes()


def fit_to_limit(png: bytes, limit: int) -> tuple[bytes, str]:
    """``(data, extension)``: the PNG itself if it fits in ``limit`` bytes, else a WebP or JPEG that does,
    carrying the PNG's parameters.

    Quality steps down until the file fits; raises ValueError if even the smallest does not.
    """
    if len(png) <= limit:
        return png, "png"
    with Image.open(io.BytesIO(png)) as img:
        params = img.info.get("parameters")
        rgb = img.convert("RGB")
    extra: dict[str, bytes] = {}
    if params:
        extra["exif"] = user_comment_exif(params)
    for fmt, ext in FALLBACKS:
        for quality in (90, 80, 65, 50):
            buf = io.BytesIO()
            kwargs: dict = {"quality": quality, **extra}
            if fmt == "JPEG" and params:
                kwargs["comment"] = params.encode("utf-8", "replace")[:60000]
            rgb.save(buf, format=fmt, **kwargs)
            if buf.tell() <= limit:
                return buf.getvalue(), ext
    raise ValueError(f"image does not fit in {limit} bytes even as a low-quality JPEG")
