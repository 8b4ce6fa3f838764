"""Seamless tiles (``--tile``): convolutions that wrap around the edges instead of padding with zeros.

With circular padding in every 2-D convolution of the UNet and the VAE, the picture has no
edge: what leaves on the right comes back on the left, so the image repeats without seams.
The SDXL UNet has no positional encoding, so nothing else in it sees where an edge is.

:func:`seamless` switches the modules over for the length of one job and puts every
convolution back as it was afterwards, also when the job fails or is cancelled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

log = logging.getLogger(__name__)

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]  # Conv2d.padding_mode


@contextlib.contextmanager
def seamless(*modules: torch.nn.Module | None) -> Iterator[int]:
    """Circular padding in every ``Conv2d`` of ``modules`` (None is skipped); yields how many were switched."""
    saved: list[tuple[torch.nn.Conv2d, PaddingMode]] = []
    seen: set[int] = set()
    try:
        for module in modules:
            if module is None:
                continue
            for layer in module.modules():
                if isinstance(layer, torch.nn.Conv2d) and id(layer) not in seen and any(layer.padding):
                    seen.add(id(layer))
                    saved.append((layer, layer.padding_mode))
                    layer.padding_mode = "circular"
        yield len(saved)
    finally:
        for layer, mode in saved:
            layer.padding_mode = mode
