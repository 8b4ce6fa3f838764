"""The engine door: everything the bot may know about an image engine. Torch-free.

The bot (``core/``, ``cogs/``, ``bot.py``) talks to an engine only through :class:`ImageEngine`.
Two engines stand behind it, both running the same ``engine.recipes`` / ``engine.models`` code:

- ``engine.local.LocalEngine``: in this process, one worker thread owns the GPU (``engine.worker``).
- ``engine.cluster.client.ClusterEngine``: GPU workers on a Ray Serve cluster (``python -m engine serve``).

Every method is ``async`` and none of them waits for a GPU: ``submit`` queues and returns a
:class:`JobHandle`; ``JobHandle.result()`` is where a caller waits, on its own task.

Requests, results and errors are the frozen, bytes-only types of ``engine.requests`` and
``engine.results`` (re-exported here), so they cross a process boundary as they are. The bot
imports them from here, with the size rule (``MIN_SIDE``, ``MAX_SIDE``, ``SIDE_STEP``, ``snap_side``), and
``open_image`` (``engine.canvas``: image bytes to an upright Pillow image, or a RequestError), which
the bot's canvases (``core.canvas``) decode with exactly as the engine does. The bot's settings
(``core.settings``) build on the engine's ``EnvSettings`` (``engine.settings_base``), so every setting fails
with the one ``SettingsError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .canvas import open_image
from .requests import (
    ASPECTS,
    FINAL_MODELS,
    LORA_WEIGHT_RANGE,
    MAX_DRAFT_SIDE,
    MAX_LORAS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_UPSCALE_SIDE,
    MIN_SIDE,
    REFERENCE_MODES,
    REFERENCE_WEIGHT_RANGE,
    SIDE_STEP,
    UPSCALE_MODES,
    DescribeRequest,
    DraftInit,
    DraftRequest,
    FinalRequest,
    ImageInit,
    Request,
    RequestError,
    UpscaleRequest,
    random_seed,
    size_for_aspect,
    snap_side,
)
from .results import GeneratedImage, JobResult, Progress, QueueInfo
from .settings_base import EnvSettings, SettingsError

__all__ = [
    "ASPECTS",
    "FINAL_MODELS",
    "LORA_WEIGHT_RANGE",
    "MAX_DRAFT_SIDE",
    "MAX_LORAS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_UPSCALE_SIDE",
    "MIN_SIDE",
    "REFERENCE_MODES",
    "REFERENCE_WEIGHT_RANGE",
    "SIDE_STEP",
    "UPSCALE_MODES",
    "DescribeRequest",
    "DraftInit",
    "DraftRequest",
    "EngineError",
    "EngineHealth",
    "EngineOffer",
    "EngineStopped",
    "EngineUnavailable",
    "EnvSettings",
    "FinalRequest",
    "GeneratedImage",
    "ImageEngine",
    "ImageInit",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "JobResult",
    "Progress",
    "ProgressFn",
    "QueueFull",
    "QueueInfo",
    "Request",
    "RequestError",
    "SettingsError",
    "UpscaleRequest",
    "open_image",
    "random_seed",
    "size_for_aspect",
    "snap_side",
]


# --------------------------------------------------------------------------- errors


class EngineError(Exception):
    """Base of the engine's own errors (``RequestError`` is a ``ValueError`` and stands apart)."""


class QueueFull(EngineError):
    """The queue holds as many jobs as it may; the message is for users."""


class JobCancelled(EngineError):
    """The job was cancelled before it finished."""


class JobFailed(EngineError):
    """The job failed; the message says why in words for users."""


class EngineStopped(EngineError):
    """The engine shut down before the job ran; it was not failed and can be submitted again later."""


class EngineUnavailable(EngineError):
    """The engine cannot be reached right now (a cluster that is down). The job was not failed:
    an engine that keeps jobs while it is unreachable says so in ``JobHandle``; ``submit`` raising
    this means the job was not taken."""


# --------------------------------------------------------------------------- what an engine offers


@dataclass(frozen=True)
class EngineOffer:
    """What the bot may ask of this engine: models, defaults, limits. Read once after ``start()``."""

    final_models: tuple[str, ...] = FINAL_MODELS
    default_final_model: str = "ssd-1b"
    draft_steps: int = 1
    final_steps: int = 28
    upscale_strength: float = 0.5
    queue_max: int = 200
    max_draft_side: int = MAX_DRAFT_SIDE
    max_final_side: int = MAX_SIDE
    preview_every: int = 5
    backend: str = "local"  # "local" | "ray": for logs and /queue, never for branching in the bot
    # Add-ons (engine.addons): what the bot may show options for. Empty / False / "" = hidden.
    loras: tuple[str, ...] = ()  # LoRA names members may pick (autocomplete filters these)
    reference: bool = False  # image reference (IP-Adapter) for drafts and finals
    upscaler: str = ""  # "" = no upscale; else what enlarges ("Lanczos", "ESRGAN x4" ...)
    describe: bool = False  # /describe (image captioning)


@dataclass(frozen=True)
class EngineHealth:
    """How the engine is doing. ``ok`` False with ``reachable`` True: up but failing (a dead worker,
    a sticky device error); ``reachable`` False: a cluster the bot cannot reach (jobs are kept)."""

    ok: bool
    reachable: bool = True
    detail: str = ""
    error: str | None = None
    workers: int = 1
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the door


ProgressFn = Callable[[Progress], None]
"""Called on the caller's event loop (never on a worker thread) with each step of a final."""


@runtime_checkable
class JobHandle(Protocol):
    """One submitted job."""

    @property
    def job_id(self) -> str: ...

    async def result(self) -> JobResult:
        """Wait for the images. Raises JobCancelled, JobFailed or EngineStopped."""
        ...

    async def cancel(self) -> bool:
        """Same as ``ImageEngine.cancel(job_id)``."""
        ...


@runtime_checkable
class ImageEngine(Protocol):
    """The one way into an image engine. All methods run on the caller's event loop and never block it."""

    @property
    def offer(self) -> EngineOffer:
        """What this engine offers; valid after ``start()``."""
        ...

    async def start(self) -> None:
        """Start serving (load models in the background, connect to the cluster). Idempotent."""
        ...

    async def submit(
        self,
        request: Request,
        *,
        user: str,
        job_id: str,
        on_progress: ProgressFn | None = None,
    ) -> JobHandle:
        """Queue ``request`` as job ``job_id`` of ``user`` (fair turns between users).

        Raises at once: RequestError (a bad request; the message is for users), QueueFull,
        EngineStopped (shutting down). A job id already queued raises RequestError.
        """
        ...

    async def queue_info(self, job_id: str) -> QueueInfo:
        """Where one job stands; state "unknown" once it is done or was never here."""
        ...

    async def queue_snapshot(self) -> list[QueueInfo]:
        """Running jobs (position 0), then waiting ones in the order they will run, with ETAs."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job (removed at once) or a running one (stops at its next step).
        False when the job is not here (finished, or never submitted)."""
        ...

    async def health(self) -> EngineHealth: ...

    async def close(self, timeout: float = 30.0) -> list[str]:
        """Stop taking work; give running jobs up to ``timeout`` s. Returns the ids of jobs that did
        not finish (not failed: run them again on the next start); their handles raise EngineStopped."""
        ...
