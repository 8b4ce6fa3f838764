"""The image safety check (optional extra ``[safety]``): NudeNet's detector on results before they are posted.

NudeNet 3.x ships its detector as an ONNX file inside the package (about 12 MB) and runs it with
onnxruntime on the CPU: no download, no GPU. NudeNet is licensed AGPL-3.0; it is optional and only
imported when a server turns the check on (``/settings safety``).

The check runs on the bot side, off the event loop (``asyncio.to_thread``): whether to look at all
depends on the server's setting and on whether the channel is age-restricted, which only the bot
knows; the engine stays an image factory that knows nothing of servers and channels, and the GPU
worker is not held up by a CPU model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# NudeNet's classes that mean an image is not safe for a channel that is not age-restricted.
UNSAFE_CLASSES = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
DEFAULT_MIN_SCORE = 0.45
SPOILER_PREFIX = "SPOILER_"  # Discord shows an attachment whose name starts with this blurred


class SafetyUnavailable(RuntimeError):
    """The optional extra is not installed (``pip install '.[safety]'``)."""


@dataclass(frozen=True)
class Verdict:
    """What the detector found in one image: ``flagged`` when any unsafe class scored high enough."""

    flagged: bool
    findings: tuple[tuple[str, float], ...] = ()  # (class, score) of the unsafe findings

    def describe(self) -> str:
        return ", ".join(f"{name} {score:.2f}" for name, score in self.findings) or "nothing"


def available() -> bool:
    """Whether NudeNet (the ``[safety]`` extra) can be imported here."""
    try:
        import nudenet  # noqa: F401
    except ImportError:
        return False
    return True


class ImageSafety:
    """NudeNet's detector, loaded on first use; :meth:`check` runs it in a worker thread."""

    def __init__(self, *, unsafe: Iterable[str] = UNSAFE_CLASSES, min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.unsafe = frozenset(unsafe)
        self.min_score = min_score
        self._detector: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._detector is None:
                try:
                    from nudenet import NudeDetector
                except ImportError as e:
                    raise SafetyUnavailable(
                        "The image safety check needs the optional extra: pip install '.[safety]' (NudeNet)."
                    ) from e
                self._detector = NudeDetector()
                log.info("image safety check loaded (NudeNet)")
            return self._detector

    def verdict(self, png: bytes) -> Verdict:
        """The detector's verdict on one encoded image (blocking: call it from a thread)."""
        detections = self._load().detect(png)
        findings = tuple(
            (d["class"], round(float(d["score"]), 3))
            for d in detections
            if d["class"] in self.unsafe and float(d["score"]) >= self.min_score
        )
        return Verdict(bool(findings), findings)

    async def check(self, png: bytes) -> Verdict:
        """:meth:`verdict` off the event loop."""
        return await asyncio.to_thread(self.verdict, png)


async def apply_policy(
    safety: ImageSafety, mode: str, files: list[tuple[str, bytes]], *, job_id: int
) -> tuple[list[tuple[str, bytes]], int]:
    """``files`` as they may be posted under ``mode`` ("spoiler" or "block"), and how many were flagged.

    Flagged images become spoilers (``SPOILER_`` names) or are left out; each flag is logged.
    """
    kept: list[tuple[str, bytes]] = []
    flagged = 0
    for name, data in files:
        verdict = await safety.check(data)
        if not verdict.flagged:
            kept.append((name, data))
            continue
        flagged += 1
        log.info("job %s: %s flagged by the image safety check (%s): %s", job_id, name, verdict.describe(), mode)
        if mode == "spoiler":
            kept.append((name if name.startswith(SPOILER_PREFIX) else SPOILER_PREFIX + name, data))
    return kept, flagged


async def preview_passes(safety: ImageSafety, png: bytes, *, job_id: int) -> bool:
    """Whether a live preview of a final may be shown under the check (either mode: an edit cannot spoiler).

    A flagged preview is left out (and logged); so is every preview when the detector cannot run.
    """
    try:
        verdict = await safety.check(png)
    except Exception:
        log.exception("job %s: the image safety check failed on a preview; it is not shown", job_id)
        return False
    if verdict.flagged:
        log.info("job %s: a preview flagged by the image safety check (%s): not shown", job_id, verdict.describe())
    return not verdict.flagged
