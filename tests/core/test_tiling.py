"""The 2x2 preview of a seamless texture: twice the size, each quadrant the image itself."""

from __future__ import annotations

import io

from PIL import Image, ImageChops

from core.tiling import tiled_preview


def test_the_preview_is_twice_the_size_and_each_quadrant_is_the_image() -> None:
    source = Image.new("RGB", (96, 64))
    source.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(64) for x in range(96)])
    buf = io.BytesIO()
    source.save(buf, format="PNG")
    with Image.open(io.BytesIO(tiled_preview(buf.getvalue()))) as preview:
        assert preview.format == "PNG" and preview.size == (192, 128)
        for left, top in ((0, 0), (96, 0), (0, 64), (96, 64)):
            quadrant = preview.crop((left, top, left + 96, top + 64)).convert("RGB")
            assert ImageChops.difference(quadrant, source).getbbox() is None, (left, top)
