"""Results larger than an upload limit: the same picture as a smaller WebP or JPEG instead of failing."""

from __future__ import annotations

import io

from PIL import Image


def fit_to_limit(png: bytes, limit: int) -> tuple[bytes, str]:
    """``(data, extension)``: the PNG itself if it fits in ``limit`` bytes, else a WebP or JPEG that does.

    Quality steps down until the file fits; raises ValueError if even the smallest does not.
    """
    if len(png) <= limit:
        return png, "png"
    with Image.open(io.BytesIO(png)) as img:
        params = img.info.get("parameters")
        rgb = img.convert("RGB")
    for fmt, ext in (("WEBP", "webp"), ("JPEG", "jpg")):
        for quality in (90, 80, 65, 50):
            buf = io.BytesIO()
            kwargs = {"quality": quality}
            if fmt == "JPEG" and params:
                kwargs["comment"] = params.encode("utf-8", "replace")[:60000]
            rgb.save(buf, format=fmt, **kwargs)
            if buf.tell() <= limit:
                return buf.getvalue(), ext
    raise ValueError(f"image does not fit in {limit} bytes even as a low-quality JPEG")
