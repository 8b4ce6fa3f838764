"""What goes into the engine and what comes out: frozen, validated, torch-free.

Everything here is plain Python so that the Discord side (``cogs/``) can build
requests without importing torch. ``validate()`` runs before a request reaches
the queue, so a bad request fails at once with a message a user can read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 1000

DraftModel = Literal["turbo"]
FinalModel = Literal["ssd-1b", "sdxl"]
FINAL_MODELS: tuple[str, ...] = ("ssd-1b", "sdxl")

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


def size_for_aspect(aspect: str, base: int) -> tuple[int, int]:
    """(width, height) near ``base*base`` pixels for ``aspect``, sides multiples of 64."""
    if aspect not in ASPECTS:
        raise RequestError(f"Unknown aspect ratio {aspect!r}; choose one of {', '.join(ASPECTS)}.")
    aw, ah = ASPECTS[aspect]
    area = base * base
    width = (area * aw / ah) ** 0.5
    height = area / width
    return max(64, round(width / 64) * 64), max(64, round(height / 64) * 64)


def new_seed() -> int:
    return random.randint(0, MAX_SEED)


def _check_prompt(prompt: str, what: str = "Prompt") -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(f"{what} is empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"{what} is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}.")


def _check_common(r: DraftRequest | FinalRequest, *, max_side: int) -> None:
    _check_prompt(r.prompt)
    if len(r.negative_prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"Negative prompt is longer than {MAX_PROMPT_CHARS} characters.")
    if not (0 <= r.seed <= MAX_SEED):
        raise RequestError(f"Seed {r.seed} is out of range; use 0 to {MAX_SEED}.")
    for name, side in (("Width", r.width), ("Height", r.height)):
        if side % 64 or not (256 <= side <= max_side):
            raise RequestError(f"{name} {side} must be a multiple of 64 between 256 and {max_side}.")
    if r.init is not None:
        if not (0.0 < r.strength <= 1.0):
            raise RequestError(f"Strength {r.strength} must be above 0 and at most 1.")
        if isinstance(r.init, ImageInit):
            _check_image_header(r.init.data, "start image")


def _check_image_header(data: bytes, what: str) -> None:
    """Refuse bytes that are not an image at once (reads the header only; decoding happens on the worker)."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray) or not data:
        raise RequestError(f"The {what} is empty.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.size  # noqa: B018 - the header is parsed by open()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise RequestError(f"The {what} is not an image I can read ({e.__class__.__name__}).") from None


@dataclass(frozen=True)
class ImageInit:
    """Start from an image given as encoded bytes (PNG, JPEG or WebP), already checked by the caller."""

    data: bytes = field(repr=False)


@dataclass(frozen=True)
class DraftInit:
    """Start from image ``index`` of an earlier draft request.

    The engine regenerates that draft from its seed (drafts are cheap and
    deterministic), so nothing but the request needs to be kept.
    """

    draft: DraftRequest
    index: int

    def __post_init__(self) -> None:
        if not (0 <= self.index < self.draft.count):
            raise RequestError(f"Draft {self.index + 1} does not exist; that job made {self.draft.count}.")


Init = ImageInit | DraftInit


@dataclass(frozen=True)
class DraftRequest:
    """Quick SDXL Turbo drafts: image i has seed ``seed + i``."""

    prompt: str
    seed: int
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    count: int = 4
    steps: int = 1
    init: Init | None = None
    strength: float = 0.6
    kind: Literal["draft"] = "draft"

    def validate(self) -> DraftRequest:
        _check_common(self, max_side=1024)
        if not (1 <= self.count <= 4):
            raise RequestError(f"Drafts come 1 to 4 at a time, not {self.count}.")
        if not (1 <= self.steps <= 4):
            raise RequestError(f"Draft steps must be 1 to 4, not {self.steps}.")
        if self.init is not None and self.steps * self.strength < 1:
            raise RequestError("With a start image, steps x strength must be at least 1.")
        if self.seed + self.count - 1 > MAX_SEED:
            raise RequestError(f"Seed {self.seed} leaves no room for {self.count} images; use a smaller seed.")
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + i for i in range(self.count))

    @property
    def model(self) -> str:
        return "turbo"

    def batch_key(self) -> tuple:
        """Drafts with equal keys can run as one batch."""
        return ("turbo", self.width, self.height, self.steps, self.init is None)


@dataclass(frozen=True)
class FinalRequest:
    """A 1024 px final from SSD-1B or SDXL base + refiner.

    ``steps`` and ``guidance`` of ``None`` take the engine's per-model defaults.
    With ``init`` it runs image-to-image at ``strength`` (the upscale of a draft).
    With ``init`` and ``mask`` (PNG or other image bytes; white = repaint, black = keep) it
    inpaints: only the white area is painted again (``/edit``, zoom out and pan; see ``engine.canvas``).
    ``width``/``height`` are the job's size; init and mask are fitted to it.
    """

    prompt: str
    seed: int
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    model: str = "ssd-1b"
    steps: int | None = None
    guidance: float | None = None
    init: Init | None = None
    strength: float = 0.5
    refiner_split: float = 0.8
    mask: bytes | None = field(default=None, repr=False)
    kind: Literal["final"] = "final"

    def validate(self) -> FinalRequest:
        _check_common(self, max_side=2048)
        if self.mask is not None:
            if self.init is None:
                raise RequestError("A mask needs an image to paint in.")
            _check_image_header(self.mask, "mask")
        if self.model not in FINAL_MODELS:
            raise RequestError(f"Unknown final model {self.model!r}; choose one of {', '.join(FINAL_MODELS)}.")
        if self.steps is not None and not (1 <= self.steps <= 100):
            raise RequestError(f"Final steps must be 1 to 100, not {self.steps}.")
        if self.guidance is not None and not (0.0 <= self.guidance <= 30.0):
            raise RequestError(f"Guidance must be 0 to 30, not {self.guidance}.")
        if not (0.5 <= self.refiner_split < 1.0):
            raise RequestError("The refiner split must be at least 0.5 and below 1.")
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        return (self.seed,)

    @property
    def count(self) -> int:
        return 1


Request = DraftRequest | FinalRequest


@dataclass(frozen=True)
class GeneratedImage:
    """One image: PNG bytes with the generation parameters in a ``parameters`` text chunk."""

    png: bytes = field(repr=False)
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class JobResult:
    images: tuple[GeneratedImage, ...]
    model: str
    request: Request
    steps: int
    guidance: float
    # Seconds: "queued" (waiting), "load" (model load), "run" (GPU), "encode" (PNG), "total".
    timings: dict[str, float]
    batch_size: int = 1


@dataclass(frozen=True)
class Progress:
    """Sent while a job runs: step ``step`` of ``total``; ``preview`` is a small PNG or None."""

    job_id: str
    step: int
    total: int
    preview: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class QueueInfo:
    """Where a job stands: ``position`` 0 means running; ``eta_s`` estimates seconds until done."""

    job_id: str
    state: Literal["waiting", "running", "done", "unknown"]
    position: int
    eta_s: float
