"""What every request is held to before it is queued: the error users read, the sizes a job may have, the aspects.

A leaf of ``engine.requests`` (which imports these names for its callers): plain Python, no torch.
"""

from __future__ import annotations

# Sides of every job: multiples of SIDE_STEP from MIN_SIDE to MAX_SIDE (drafts up to MAX_DRAFT_SIDE).
MIN_SIDE = 256
MAX_SIDE = 2048
MAX_DRAFT_SIDE = 1024
SIDE_STEP = 64

# Aspect ratios offered to users. Each maps to (width, height) at about the same
# pixel count as the square size, sides multiples of 64.
ASPECTS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "21:9": (21, 9),
}


class RequestError(ValueError):
    """A request the engine refuses before it reaches the GPU. The message is for users."""


def size_for_aspect(aspect: str, base: int, *, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) near ``base*base`` pixels for ``aspect``, sides multiples of 64.

    Every side comes out between MIN_SIDE and ``max_side``: a wide aspect whose long side would pass
    ``max_side`` is made smaller (fewer pixels, same aspect), one whose short side would fall under
    MIN_SIDE larger, so every allowed size works for every aspect.
    """
    if aspect not in ASPECTS:
        raise RequestError(f"Unknown aspect ratio {aspect!r}; choose one of {', '.join(ASPECTS)}.")
    aw, ah = ASPECTS[aspect]
    area = base * base
    width = (area * aw / ah) ** 0.5
    height = area / width
    shrink = min(1.0, max_side / max(width, height))
    width, height = width * shrink, height * shrink
    grow = max(1.0, MIN_SIDE / min(width, height))
    width, height = width * grow, height * grow

    def side(value: float) -> int:
        return max(MIN_SIDE, min(max_side // SIDE_STEP * SIDE_STEP, round(value / SIDE_STEP) * SIDE_STEP))

    return side(width), side(height)


def snap_side(value: float) -> int:
    """``value`` pixels as a job side: the nearest multiple of SIDE_STEP, kept within MIN_SIDE to MAX_SIDE."""
    return max(MIN_SIDE, min(MAX_SIDE, round(value / SIDE_STEP) * SIDE_STEP))
