"""What goes into the engine and what comes out: frozen, validated, torch-free.

Everything here is plain Python so that the Discord side (``cogs/``) can build
requests without importing torch. ``validate()`` runs before a request reaches
the queue, so a bad request fails at once with a message a user can read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

# Re-exported: importers of engine.requests (engine.api, engine.__main__, the tests) take these from here too.
from .request_rules import (  # noqa: F401
    ASPECTS,
    MAX_DRAFT_SIDE,
    MAX_SIDE,
    MIN_SIDE,
    SIDE_STEP,
    RequestError,
    size_for_aspect,
    snap_side,
)

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 1000
MAX_LORAS = 2
LORA_WEIGHT_RANGE = (-2.0, 2.0)
REFERENCE_WEIGHT_RANGE = (0.0, 2.0)
REFERENCE_MODES: tuple[str, ...] = ("full", "style")
UPSCALE_MODES: tuple[str, ...] = ("subtle", "creative")
MAX_UPSCALE_SIDE = MAX_SIDE  # the source of an upscale; the result is twice as large
MAX_DESCRIBE_PIXELS = 4096 * 4096
CHAOS_SEED_STRIDE = 104_729  # seeds of a chaos draft are this far apart per chaos point
CHAOS_MAX_STRENGTH_JITTER = 0.25  # at chaos 100 an image-to-image draft's strength moves up to +-0.25

Loras = tuple[tuple[str, float], ...]

FINAL_MODELS: tuple[str, ...] = ("ssd-1b", "sdxl")

def random_seed(count: int = 1) -> int:
    """A random seed that leaves room for ``count`` images (image i of a draft has seed ``seed + i``)."""
    return random.randint(0, MAX_SEED - (count - 1))


def _check_prompt(prompt: str, what: str = "Prompt") -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(f"{what} is empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"{what} is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}.")


def _check_seed(seed: int) -> None:
    if not (0 <= seed <= MAX_SEED):
        raise RequestError(f"Seed {seed} is out of range; use 0 to {MAX_SEED}.")


def _check_final_model(model: str) -> None:
    if model not in FINAL_MODELS:
        raise RequestError(f"Unknown final model {model!r}; choose one of {', '.join(FINAL_MODELS)}.")


def _check_common(r: DraftRequest | FinalRequest, *, max_side: int) -> None:
    _check_prompt(r.prompt)
    if len(r.negative_prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"Negative prompt is longer than {MAX_PROMPT_CHARS} characters.")
    _check_seed(r.seed)
    for name, side in (("Width", r.width), ("Height", r.height)):
        if side % SIDE_STEP or not (MIN_SIDE <= side <= max_side):
            raise RequestError(f"{name} {side} must be a multiple of {SIDE_STEP} between {MIN_SIDE} and {max_side}.")
    if r.init is not None:
        if not (0.0 < r.strength <= 1.0):
            raise RequestError(f"Strength {r.strength} must be above 0 and at most 1.")
        if isinstance(r.init, ImageInit):
            _check_image_header(r.init.data, "start image")


def _check_image_header(data: bytes, what: str) -> tuple[int, int]:
    """Refuse bytes that are not an image at once (reads the header only; decoding happens on the worker).

    Returns the image's (width, height)."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray) or not data:
        raise RequestError(f"The {what} is empty.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise RequestError(f"The {what} is not an image I can read ({e.__class__.__name__}).") from None


def normalize_loras(loras) -> Loras:
    """``loras`` as a tuple of (name, float weight) pairs (lists from JSON become tuples)."""
    try:
        return tuple((str(name), float(weight)) for name, weight in loras)
    except (TypeError, ValueError):
        raise RequestError("LoRAs must be given as (name, weight) pairs.") from None


def _check_craft(r: DraftRequest | FinalRequest) -> None:
    """The prompt-craft fields both kinds share: tile, LoRAs, image reference."""
    if not isinstance(r.tile, bool):
        raise RequestError("tile must be true or false.")
    if len(r.loras) > MAX_LORAS:
        raise RequestError(f"At most {MAX_LORAS} LoRAs can be stacked; {len(r.loras)} were given.")
    seen: set[str] = set()
    low, high = LORA_WEIGHT_RANGE
    for name, weight in r.loras:
        if not name.strip():
            raise RequestError("A LoRA name is empty.")
        if name in seen:
            raise RequestError(f"LoRA {name!r} is given twice.")
        seen.add(name)
        if not (low <= weight <= high) or weight != weight:
            raise RequestError(f"LoRA weight {weight:g} for {name!r} is out of range ({low:g} to {high:g}).")
    low, high = REFERENCE_WEIGHT_RANGE
    if not (low <= r.reference_weight <= high):
        raise RequestError(f"Reference weight {r.reference_weight:g} is out of range ({low:g} to {high:g}).")
    if r.reference_mode not in REFERENCE_MODES:
        raise RequestError(f"Unknown reference mode {r.reference_mode!r}; use {' or '.join(REFERENCE_MODES)}.")
    if r.reference is not None:
        _check_image_header(r.reference, "reference image")


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
    """Quick SDXL Turbo drafts: image i has seed ``seed + i`` (see ``chaos``).

    Prompt craft (every default keeps the plain behaviour):

    - ``tile``: seamless texture (circular padding in the UNet and the decoder for this job).
    - ``loras``: up to two ``(name, weight)`` pairs from the engine's LoRA library, weights -2 to 2.
    - ``reference`` (image bytes), ``reference_weight`` (0 to 2), ``reference_mode`` ("full" or
      "style", InstantStyle's style layers only): IP-Adapter image reference.
    - ``chaos`` (0-100): spread of the drafts. 0: seeds ``seed, seed+1, ...``. Above 0 the seeds are
      ``seed + i * chaos * CHAOS_SEED_STRIDE`` (mod 2**32), and drafts from a start image each get
      their own strength, ``strength`` moved by up to ``chaos/100 * CHAOS_MAX_STRENGTH_JITTER``
      (deterministic from the seed; see :attr:`strengths`). Turbo runs without guidance, so there
      is no guidance to jitter.
    """

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
    tile: bool = False
    loras: Loras = ()
    reference: bytes | None = field(default=None, repr=False)
    reference_weight: float = 0.5
    reference_mode: str = "full"
    chaos: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "loras", normalize_loras(self.loras))

    def validate(self) -> DraftRequest:
        _check_common(self, max_side=MAX_DRAFT_SIDE)
        _check_craft(self)
        if not isinstance(self.chaos, int) or isinstance(self.chaos, bool) or not (0 <= self.chaos <= 100):
            raise RequestError(f"Chaos must be a whole number from 0 to 100, not {self.chaos}.")
        if not (1 <= self.count <= 4):
            raise RequestError(f"Drafts come 1 to 4 at a time, not {self.count}.")
        if not (1 <= self.steps <= 4):
            raise RequestError(f"Draft steps must be 1 to 4, not {self.steps}.")
        if self.init is not None and self.steps * self.strength < 1:
            raise RequestError("With a start image, steps x strength must be at least 1.")
        if self.chaos == 0 and self.seed + self.count - 1 > MAX_SEED:
            raise RequestError(f"Seed {self.seed} leaves no room for {self.count} images; use a smaller seed.")
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seed of each image: ``seed + i``, or with chaos ``seed + i * chaos * CHAOS_SEED_STRIDE`` (mod 2**32)."""
        if self.chaos <= 0:
            return tuple(self.seed + i for i in range(self.count))
        stride = self.chaos * CHAOS_SEED_STRIDE
        return tuple((self.seed + i * stride) % (MAX_SEED + 1) for i in range(self.count))

    @property
    def strengths(self) -> tuple[float, ...]:
        """The image-to-image strength of each image: ``strength``, jittered per image when ``chaos`` > 0.

        The jitter is deterministic from the seed and keeps steps x strength at least 1 and strength at most 1.
        """
        if self.chaos <= 0:
            return (self.strength,) * self.count
        rng = random.Random(self.seed)
        spread = self.chaos / 100 * CHAOS_MAX_STRENGTH_JITTER
        low = 1.0 / self.steps
        return tuple(
            round(min(1.0, max(low, self.strength + rng.uniform(-spread, spread))), 4) for _ in range(self.count)
        )

    @property
    def model(self) -> str:
        return "turbo"

    def craft_key(self) -> tuple:
        """What must match for two jobs to share the UNet's state: tile, LoRAs, reference."""
        return craft_key(self)

    def batch_key(self) -> tuple:
        """Drafts with equal keys can run as one batch."""
        return ("turbo", self.width, self.height, self.steps, self.init is None, *self.craft_key())


@dataclass(frozen=True)
class FinalRequest:
    """A 1024 px final from SSD-1B or SDXL base + refiner.

    ``steps`` and ``guidance`` of ``None`` take the engine's per-model defaults.
    With ``init`` it runs image-to-image at ``strength`` (the upscale of a draft).
    With ``init`` and ``mask`` (PNG or other image bytes; white = repaint, black = keep) it
    inpaints: only the white area is painted again (``/edit``, zoom out and pan; see ``engine.canvas``).
    ``width``/``height`` are the job's size; init and mask are fitted to it.
    ``tile``, ``loras``, ``reference*`` as on :class:`DraftRequest` (the reference acts on the base
    pass only, not on the refiner).
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
    tile: bool = False
    loras: Loras = ()
    reference: bytes | None = field(default=None, repr=False)
    reference_weight: float = 0.5
    reference_mode: str = "full"

    def __post_init__(self) -> None:
        object.__setattr__(self, "loras", normalize_loras(self.loras))

    def validate(self) -> FinalRequest:
        _check_common(self, max_side=MAX_SIDE)
        _check_craft(self)
        if self.mask is not None:
            if self.init is None:
                raise RequestError("A mask needs an image to paint in.")
            _check_image_header(self.mask, "mask")
        _check_final_model(self.model)
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


def craft_key(r: DraftRequest | FinalRequest) -> tuple:
    """Tile, LoRAs (order free) and reference (by content hash, weight, mode) of a request."""
    import hashlib

    loras = tuple(sorted((name, round(weight, 4)) for name, weight in r.loras))
    reference: tuple = ()
    if r.reference is not None:
        reference = (hashlib.sha256(r.reference).hexdigest()[:16], round(r.reference_weight, 4), r.reference_mode)
    return (r.tile, loras, reference)


@dataclass(frozen=True)
class UpscaleRequest:
    """Enlarge one image (a final's PNG) 2x.

    "subtle": the engine's upscaler model (ESRGAN family) or Lanczos. "creative": then an
    image-to-image pass of the final ``model`` over overlapping tiles at low strength, with
    ``prompt``/``negative_prompt`` (an empty prompt takes the one in the PNG's ``parameters``)
    and ``seed``. The result is one image twice the source's width and height.
    """

    image: bytes = field(repr=False)
    mode: str = "subtle"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    model: str = "ssd-1b"
    kind: Literal["upscale"] = "upscale"

    def validate(self) -> UpscaleRequest:
        if self.mode not in UPSCALE_MODES:
            raise RequestError(f"Unknown upscale mode {self.mode!r}; use {' or '.join(UPSCALE_MODES)}.")
        width, height = _check_image_header(self.image, "image to upscale")
        if max(width, height) > MAX_UPSCALE_SIDE:
            raise RequestError(
                f"The image is {width}x{height}; upscale takes images up to {MAX_UPSCALE_SIDE} px on a side."
            )
        if len(self.prompt) > MAX_PROMPT_CHARS or len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise RequestError(f"Prompts are limited to {MAX_PROMPT_CHARS} characters.")
        _check_seed(self.seed)
        _check_final_model(self.model)
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        return (self.seed,)

    @property
    def count(self) -> int:
        return 1

    @property
    def lane(self) -> str:
        return "final"


@dataclass(frozen=True)
class DescribeRequest:
    """Prompt suggestions (``count``, 3 or 4) for an uploaded image; the result's ``suggestions``, no images."""

    image: bytes = field(repr=False)
    count: int = 4
    kind: Literal["describe"] = "describe"

    def validate(self) -> DescribeRequest:
        width, height = _check_image_header(self.image, "image to describe")
        if width * height > MAX_DESCRIBE_PIXELS:
            raise RequestError(f"The image is {width}x{height}; describe takes up to 16 megapixels.")
        if not (3 <= self.count <= 4):
            raise RequestError(f"Describe gives 3 or 4 suggestions, not {self.count}.")
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        return ()

    @property
    def model(self) -> str:
        return "describe"

    @property
    def lane(self) -> str:
        return "draft"


Request = DraftRequest | FinalRequest | UpscaleRequest | DescribeRequest
