"""What comes out of the engine: images, results, progress and queue places. Frozen, bytes-only, torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .requests import Request


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
    suggestions: tuple[str, ...] = ()  # a DescribeRequest's prompt suggestions (it has no images)


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
