"""The images jobs start from and the finals' images, on disk (``core.inputs``): keep, read, prune.

Touches the image store and reads the store's unfinished rows (whose images are never pruned).
Without an image store (``inputs=None``) every feature that needs one is refused politely.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from core.history import HistoryStore
from core.inputs import InputStore
from core.limits import Refusal
from core.settings import BotSettings

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0  # stored images are pruned at most this often (and at start)
NO_STORE = "This bot keeps no image files, so it can't start from an image."


class StoredImages:
    """The image store as jobs use it, with the retention setting and disk cap applied now and then."""

    def __init__(
        self, inputs: InputStore | None, store: HistoryStore, settings: BotSettings, clock: Callable[[], float]
    ) -> None:
        self.inputs = inputs
        self.settings = settings
        self._store = store
        self._clock = clock
        self._next_prune = 0.0  # when prune next runs after a delivery (clock seconds)

    def check_kept(self) -> None:
        """Refuse a job that starts from an image when there is no image store."""
        if self.inputs is None:
            raise Refusal(NO_STORE)

    async def keep(self, png: bytes) -> str:
        """Store an image a job starts from (before its row is written); returns its key. Raises Refusal."""
        if self.inputs is None:
            raise Refusal(NO_STORE)
        try:
            return await self.inputs.put(png)
        except OSError as e:
            log.error("could not store an input image: %s", e)
            raise Refusal("I could not store your image on my side; try again later.") from e

    async def result(self, job_id: int) -> bytes | None:
        """A final's stored image (the source of zoom, pan and vary), or None."""
        return await self.inputs.result(job_id) if self.inputs is not None else None

    async def keep_result(self, job_id: int, png: bytes) -> None:
        """Keep a delivered final's image for zoom, pan and vary; a failure is only logged."""
        if self.inputs is None:
            return
        try:
            await self.inputs.put_result(job_id, png)
        except OSError as e:
            log.warning("job %s: could not keep its image for zoom and pan: %s", job_id, e)

    async def prune_if_due(self) -> None:
        """Prune when the last run is an hour ago or more (called after each delivery)."""
        if self._clock() >= self._next_prune:
            await self.prune()

    async def prune(self) -> tuple[int, int]:
        """Apply the retention setting and disk cap to the stored images; returns files and bytes removed.

        Images of jobs still to run are kept. Runs at start and after deliveries, at most once an hour.
        """
        if self.inputs is None:
            return 0, 0
        self._next_prune = self._clock() + PRUNE_EVERY_S
        days, cap = self.settings.image_retention_days, self.settings.image_store_max_mb
        keep = {
            key
            for job in await self._store.unfinished_jobs()
            for key in (job.params.init_image, job.params.mask_image, job.params.reference_image)
            if isinstance(key, str)
        }
        try:
            removed, freed = await asyncio.to_thread(
                self.inputs.prune_sync,
                max_age_s=days * 86400 if days > 0 else None,
                max_bytes=cap * 2**20 if cap > 0 else None,
                keep=keep,
                now=self._clock(),
            )
        except OSError as e:
            log.warning("could not prune the stored images: %s", e)
            return 0, 0
        if removed:
            log.info("pruned %d stored images (%.1f MiB)", removed, freed / 2**20)
        return removed, freed
