"""The 2x2 preview of a seamless texture (``--tile``): the image repeated twice across and twice down.

Pure Pillow, no Discord: the "Tiled preview" button (``cogs.ui.buttons``) runs it in a worker thread
on the images of a result message. A seam in the texture shows as a line through the middle.
"""

from __future__ import annotations

import io

from PIL import Image

PREVIEW_REPEAT = 2


def tiled_preview(data: bytes) -> bytes:
    """A PNG twice as wide and twice as high as the image in ``data``, each quadrant the image itself."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        tile = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    width, height = tile.size
    mosaic = Image.new(tile.mode, (width * PREVIEW_REPEAT, height * PREVIEW_REPEAT))
    for row in range(PREVIEW_REPEAT):
        for column in range(PREVIEW_REPEAT):
            mosaic.paste(tile, (column * width, row * height))
    buf = io.BytesIO()
    mosaic.save(buf, format="PNG", compress_level=4)
    return buf.getvalue()
