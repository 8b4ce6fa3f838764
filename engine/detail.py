"""Photo-sized images from the tiny preset (``ENGINE_TINY_DETAIL=photo``).

The tiny preset's random models decode to blocky noise that PNG squeezes to almost nothing (a 1024 px
final is about 90 KB; a real one 1.2-2.5 MB), so every path that carries image bytes (the cluster's
wire, uploads, history) would only ever be tried at a twentieth of its real load. With ``photo``, each
decoded image gets a fine grain of at most +-``AMPLITUDE`` levels per pixel and channel before it is
encoded: the picture stays the same to the eye, and its PNG is as large as a photograph's (measured:
0.35 MB for a 512 px draft, 1.7 MB for a 1024 px final, about 7 MB for a 2048 px upscale).

The grain is drawn from the image's seed and index (previews: from their own pixels), so one seed
still makes the same bytes every time, on the local engine and on the cluster alike. It is applied
where every path encodes: ``engine.output.encode_result`` (drafts, finals, upscales; local worker and
cluster replicas) and ``engine.recipes.images.latent_preview`` (live previews), and only ever when
:func:`detail_of` says so: on the tiny preset, never on real models.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .settings import EngineSettings

AMPLITUDE = 5  # grey levels; the grain is uniform in [-5, 5], reflected at 0 and 255 rather than clipped

# (image, seed, index of the image in its job) -> the image with detail
Detail = Callable[[Image.Image, int, int], Image.Image]
# (preview image) -> the preview with detail
PreviewDetail = Callable[[Image.Image], Image.Image]


def detail_of(settings: EngineSettings) -> Detail | None:
    """The detail to add to every image of an engine with ``settings``: None unless the tiny preset asks for it."""
    if settings.preset == "tiny" and settings.tiny_detail == "photo":
        return photo_detail
    return None


def preview_detail_of(settings: EngineSettings) -> PreviewDetail | None:
    """The same for live previews (they have no seed of their own: their pixels key the grain)."""
    return preview_detail if detail_of(settings) is not None else None


def photo_detail(image: Image.Image, seed: int, index: int) -> Image.Image:
    """``image`` with a grain that depends only on ``seed``, ``index`` and its size (numpy, vectorised)."""
    rng = np.random.default_rng([int(seed), int(index), image.width, image.height])
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    grain = rng.integers(-AMPLITUDE, AMPLITUDE + 1, size=pixels.shape, dtype=np.int16)
    detailed = pixels + grain
    # Saturated pixels (the tiny models make many) take the grain the other way: clipping would flatten it.
    detailed = np.where((detailed < 0) | (detailed > 255), pixels - grain, detailed)
    return Image.fromarray(detailed.astype(np.uint8), "RGB")


def preview_detail(image: Image.Image) -> Image.Image:
    return photo_detail(image, zlib.crc32(image.tobytes()), 0)
