"""What the history store gives and takes: frozen records of jobs, their mode and parameters.

Plain values only: nothing here knows of SQL, the engine or Discord. A job's row stores its
:class:`JobMode` as text and its :class:`JobParams` as one JSON object; both are checked here,
strictly when a job is made (:class:`NewJob`) and leniently when a stored row is read back
(:meth:`JobParams.from_json`), so a row written by an older or newer bot still reads.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

log = logging.getLogger(__name__)

JOB_KINDS: tuple[str, ...] = ("draft", "final")
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
UNFINISHED_STATUSES: tuple[str, ...] = ("queued", "running")


class HistoryError(Exception):
    """Something went wrong in the history store."""


class JobNotFound(HistoryError, LookupError):
    """No job has the given id."""


class JobMode(str, enum.Enum):
    """How a job came to be; stored as its value, and equal to it (``job.mode == "imagine"``).

    A ``StrEnum`` spelled out, because the bot still runs on Python 3.10.
    """

    IMAGINE = "imagine"  # /imagine and image channels: four drafts from a prompt
    IMG2IMG = "img2img"  # /imagine with an image: four drafts that start from it
    FINAL = "final"  # /final: one final straight from the prompt
    INPAINT = "inpaint"  # /edit: a final that paints a masked area again
    OUTPAINT = "outpaint"  # zoom out or pan a final
    VARIATION = "variation"  # V1-V4: four new drafts near one draft
    VARY = "vary"  # Vary (subtle/strong): a new final near a final (stored as "variation" before migration 0006)
    FINAL_OF_DRAFT = "upscale"  # U1-U4 and 1️⃣-4️⃣: the final of one draft (stored as "upscale" since the start)
    REROLL = "reroll"  # 🔁: the same job with a new seed
    REMIX = "remix"  # Remix: the same job (seed, size, settings) with the prompt edited in a form
    UPSCALE_2X = "upscale2x"  # Upscale (subtle/creative) on a final: the final's image enlarged 2x

    def __str__(self) -> str:
        return self.value


def _key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"must be a non-empty string, not {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"must be a finite number, not {value!r}")
    return value


def _region(value: Any) -> tuple[float, float, float, float]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) != 4:
        raise TypeError(f"must be four numbers (left, top, width, height in %), not {value!r}")
    left, top, width, height = (_number(v) for v in value)
    return left, top, width, height


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"must be a list of names, not {value!r}")
    return tuple(_key(v) for v in value)


def _chaos(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= 100):
        raise TypeError(f"must be a whole number from 0 to 100, not {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, not {value!r}")
    return value


def _loras(value: Any) -> tuple[tuple[str, float], ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"must be a list of [name, weight] pairs, not {value!r}")
    pairs = []
    for pair in value:
        if isinstance(pair, str) or not isinstance(pair, list | tuple) or len(pair) != 2:
            raise TypeError(f"must be a list of [name, weight] pairs, not {value!r}")
        pairs.append((_key(pair[0]), float(_number(pair[1]))))
    return tuple(pairs)


def _job_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"must be a job id (an int of 1 or more), not {value!r}")
    return value


# How each parameter is checked and what it becomes; the JSON form is the same value (tuples as lists).
_PARAM_CHECKS: dict[str, Callable[[Any], Any]] = {
    "aspect": _text,
    "init_image": _key,
    "mask_image": _key,
    "region": _region,
    "outpaint": _key,
    "vary": _key,
    "refiner_split": _number,
    "prefs": _names,
    "reroll_of": _job_id,
    "repost_of": _job_id,
    "style": _key,
    "chaos": _chaos,
    "tile": _flag,
    "final_model": _key,
    "loras": _loras,
    "reference_image": _key,
    "reference_weight": _number,
    "reference_mode": _key,
    "remix_of": _job_id,
    "upscale": _key,
    "init_result": _job_id,
}


@dataclass(frozen=True, kw_only=True)
class JobParams:
    """A job's inputs beyond its columns, stored as one JSON object (``jobs.params``).

    Every field is optional; one that is ``None`` (``prefs``, ``loras``: empty) is left out of the JSON.
    ``extra`` holds what a stored row had that this code does not read (keys it does not know,
    or values of the wrong type), so a read never fails on them and a copy of the row
    (🔁, re-post, V) writes them back unchanged.
    """

    aspect: str | None = None  # the aspect ratio asked for ("16:9"); None: the image's own
    init_image: str | None = None  # key of the stored image (core.inputs) the job starts from
    mask_image: str | None = None  # key of the stored mask (white = repaint)
    region: tuple[float, float, float, float] | None = None  # /edit region: left, top, width, height in %
    outpaint: str | None = None  # the zoom or pan action (zoom15, pan_left, ...)
    vary: str | None = None  # how a final was varied: "subtle" or "strong"
    refiner_split: float | None = None  # where SDXL base hands over to the refiner; None: the engine's
    prefs: tuple[str, ...] = ()  # the /prefer defaults that shaped the job (the row holds their values)
    reroll_of: int | None = None  # 🔁: the job this one rolled again
    repost_of: int | None = None  # a re-post: the job this one made again
    style: str | None = None  # the style preset (core.styles) already in the prompt and negative prompt
    chaos: int | None = None  # --chaos 0-100: spread of the drafts (their seeds; see DraftRequest.chaos)
    tile: bool | None = None  # --tile: a seamless texture (None: not tiled)
    final_model: str | None = None  # --model on drafts: the model their U1-U4 finals use
    loras: tuple[tuple[str, float], ...] = ()  # LoRAs stacked on the model: (name, weight), at most two
    reference_image: str | None = None  # key of the stored image reference (IP-Adapter) the job borrows from
    reference_weight: float | None = None  # how strongly the reference acts (0 to 2)
    reference_mode: str | None = None  # "full" (look and subject) or "style" (style layers only)
    remix_of: int | None = None  # Remix: the job whose prompt was edited into this one
    upscale: str | None = None  # an image enlarged 2x (init_result's, or init_image's): "subtle" or "creative"
    init_result: int | None = None  # the job whose kept result (core.inputs ``results/``) the job starts from
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, check in _PARAM_CHECKS.items():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                object.__setattr__(self, name, check(value))
            except TypeError as e:
                raise TypeError(f"Job parameter {name} {e}.") from None
        if not isinstance(self.extra, Mapping) or not all(isinstance(k, str) for k in self.extra):
            raise TypeError(f"Job parameters' extra must map names to values, not {self.extra!r}.")
        shadowed = sorted(k for k in self.extra if k in _PARAM_CHECKS and k in self._set())
        if shadowed:
            raise ValueError(f"Job parameter(s) {', '.join(shadowed)} given both typed and in extra.")
        # Our own copy: a caller mutating its dict later cannot change this job.
        object.__setattr__(self, "extra", dict(self.extra))

    def _set(self) -> dict[str, Any]:
        """The typed fields that hold a value, in their JSON form."""
        values: dict[str, Any] = {}
        for name in _PARAM_CHECKS:
            value = getattr(self, name)
            if value is None or value == ():  # prefs, loras: empty is left out
                continue
            if name == "loras":
                values[name] = [list(pair) for pair in value]
            else:
                values[name] = list(value) if isinstance(value, tuple) else value
        return values

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the row: the fields that are set, over ``extra``."""
        return {**self.extra, **self._set()}

    @classmethod
    def from_json(cls, data: object, *, job_id: int | None = None) -> JobParams:
        """The parameters of a stored row; never raises (see the class docstring for what is kept)."""
        if not isinstance(data, Mapping):
            log.warning("job %s: its params are not a JSON object (%r); reading them as empty", job_id, data)
            return cls()
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in data.items():
            check = _PARAM_CHECKS.get(name)
            if check is None or value is None:
                extra[name] = value
                continue
            try:
                known[name] = check(value)
            except TypeError as e:
                log.warning("job %s: parameter %s %s; kept as it is, unread", job_id, name, e)
                extra[name] = value
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class JobRecord:
    """One stored job, as it is now."""

    id: int
    kind: str  # "draft" | "final"
    mode: JobMode
    parent_id: int | None  # the job this one came from (reroll/upscale/variation)
    parent_index: int | None  # which image of the parent (0-based)
    guild_id: int | None
    channel_id: int
    user_id: int
    prompt: str
    negative_prompt: str
    model: str  # "turbo" | "ssd-1b" | "sdxl"
    width: int
    height: int
    steps: int | None
    guidance: float | None
    seed: int  # base seed: image i of a draft job has seed + i
    count: int
    strength: float | None
    params: JobParams
    status: str  # "queued" | "running" | "done" | "failed" | "cancelled"
    error: str | None
    seeds: tuple[int, ...]  # actual seeds of the results; empty until done
    timings: dict[str, float]  # seconds by phase; {} until done
    created_at: float
    started_at: float | None
    finished_at: float | None
    source_message_id: int | None  # the user's message (image channels) to reply to
    interaction_token: str | None = field(repr=False)  # a credential while valid: kept out of repr/logs
    interaction_expires_at: float | None
    result_channel_id: int | None
    result_message_id: int | None
    favorite: bool

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.status not in UNFINISHED_STATUSES


@dataclass(frozen=True, kw_only=True)
class NewJob:
    """What the caller knows about a job before it is stored (keyword arguments only).

    ``mode`` may be given as its text ("imagine"); it is checked and stored as a :class:`JobMode`.
    """

    kind: str
    mode: JobMode
    guild_id: int | None
    channel_id: int
    user_id: int
    prompt: str
    model: str
    width: int
    height: int
    seed: int
    parent_id: int | None = None
    parent_index: int | None = None
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    count: int = 1
    strength: float | None = None
    params: JobParams = field(default_factory=JobParams)
    source_message_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    interaction_expires_at: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"Job kind must be one of {', '.join(JOB_KINDS)}, not {self.kind!r}.")
        try:
            object.__setattr__(self, "mode", JobMode(self.mode))
        except ValueError:
            modes = ", ".join(m.value for m in JobMode)
            raise ValueError(f"Job mode must be one of {modes}, not {self.mode!r}.") from None
        if self.count < 1:
            raise ValueError(f"Job count must be at least 1, not {self.count}.")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Job size {self.width}x{self.height} is not positive.")
        if self.parent_index is not None and (self.parent_id is None or self.parent_index < 0):
            raise ValueError("parent_index needs a parent_id and must be 0 or more.")
        if not isinstance(self.params, JobParams):
            raise TypeError(f"params must be JobParams, not {type(self.params).__name__}.")

    def columns(self) -> dict[str, Any]:
        """The fields by name, as the insert statement takes them (params as their JSON object)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(mode=self.mode.value, params=self.params.to_json())
        return values


@dataclass(frozen=True)
class Forgotten:
    """What :meth:`HistoryStore.forget_member` deleted: rows by table, and the stored images no row names now."""

    rows: dict[str, int]  # rows deleted, by table
    inputs: tuple[str, ...]  # input keys (``inputs/<key>.*``) only the member's rows named
    results: tuple[int, ...]  # job ids whose kept result (``results/<id>.png``) no remaining row starts from
