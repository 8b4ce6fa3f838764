"""The images jobs start from and the finals' images, on disk (``core.inputs``): keep, read, release, prune.

A final's kept result belongs to the final: an upscale's or a Vary's row names it (``params.init_result``) and
no release removes it; prune leaves it while a job still to run (or a request being stored) needs it.

Touches the image store and reads the store's rows (whose images are kept while a row may need them).
Without an image store (``inputs=None``) every feature that needs one is refused politely.

A start image is named by its content, so one file may serve several rows. It is kept (:meth:`keep`)
before its row is written, and released (:meth:`release`) when its job is refused or cancelled: the
file goes unless another row still needs it or another request is keeping it right now.

The disk cap holds when writing: an upload that would take the store past ``IMAGE_STORE_MAX_MB`` first
prunes (by the same rules, down to 90 % of the cap so that the next writes need none) and is refused when
even that leaves no room. Each member's uploads count against ``UPLOAD_MB_PER_HOUR`` (``upload_budget``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from core.history import HistoryStore, JobParams, JobRecord
from core.inputs import InputStore
from core.jobs.upload_budget import UploadBudget
from core.limits import Refusal
from core.settings import BotSettings

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0  # stored images are pruned at most this often (and at start), and when a write needs room
PRUNE_TO = 0.9  # a prune that makes room for a write leaves the store this full (of the cap)
NO_STORE = "This bot keeps no image files, so it can't start from an image."
FULL = "My image store is full of images that waiting jobs still need; try again in a few minutes."
GONE = "The image this starts from is no longer stored (old images are removed now and then), so I can't make it."


def _not_stored(error: OSError) -> Refusal:
    log.error("could not store an input image: %s", error)
    return Refusal("I could not store your image on my side; try again later.")


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
        self._holding: Counter[str] = Counter()  # keys kept by requests whose row is not written yet
        self._holding_results: Counter[int] = Counter()  # kept results named by rows not written yet
        self._held_while_pruning: set[str] | None = None  # input keys held since the running prune began
        self._results_held_while_pruning: set[int] | None = None  # ... and kept results
        self._prune_lock = asyncio.Lock()
        self._releasing: set[str] = set()  # keys a release is asking the store about right now
        self._kept_meanwhile: set[str] = set()  # ... and that a request kept while it asked
        self._release_lock = asyncio.Lock()
        self._usage: int | None = None  # bytes in the store: exact after a prune, plus what was written since
        self.budget = UploadBudget(lambda: self.settings.upload_mb_per_hour, clock)

    def check_kept(self) -> None:
        """Refuse a job that starts from an image when there is no image store."""
        if self.inputs is None:
            raise Refusal(NO_STORE)

    async def keep(self, png: bytes, *, user_id: int | None = None) -> str:
        """Store an image a job starts from (before its row is written); returns its key. Raises Refusal.

        ``user_id``'s hourly budget is checked and charged with the bytes written; the disk cap is made room
        for first (or the image refused). The key is held until :meth:`settle` (the row is written) or
        :meth:`drop`: no release removes it meanwhile.
        """
        if self.inputs is None:
            raise Refusal(NO_STORE)
        if user_id is not None:
            try:
                self.budget.check(user_id, len(png))
            except Refusal:
                if not self.inputs.has_sync(hashlib.sha256(png).hexdigest()):  # stored already: costs nothing
                    raise
        await self._make_room(self.inputs, len(png))
        try:
            key, written = await self.inputs.put_new(png)
        except OSError as e:
            raise _not_stored(e) from e
        self._wrote(written)
        if user_id is not None:
            self.budget.spend(user_id, written)
        self._hold(key)
        if not self.inputs.has_sync(key):  # released while ``put`` found it there: write it again
            try:
                await self.inputs.put(png)
            except OSError as e:
                self.settle([key])
                raise _not_stored(e) from e
        return key

    def _wrote(self, size: int) -> None:
        if self._usage is not None:
            self._usage += size

    async def _make_room(self, inputs: InputStore, size: int) -> None:
        """Before writing ``size`` bytes: prune if the store would pass its cap, and refuse if that is not enough.

        The usage is counted once, then kept up by writes (removals are not subtracted: an estimate from
        above, made exact again by each prune).
        """
        cap = self.settings.image_store_max_mb * 2**20
        if cap <= 0:
            return
        if self._usage is None:
            try:
                self._usage = await inputs.usage()
            except OSError as e:
                raise _not_stored(e) from e
        if self._usage + size <= cap:
            return
        await self.prune(max_bytes=max(0, int(cap * PRUNE_TO) - size))
        if self._usage is None or self._usage + size > cap:
            log.warning("image store full: %s bytes kept, %d more refused", self._usage, size)
            raise Refusal(FULL)

    def _hold(self, key: str) -> None:
        """Hold ``key`` for a row not written yet (until :meth:`settle`): no prune or release removes it meanwhile."""
        self._holding[key] += 1
        if self._held_while_pruning is not None:
            self._held_while_pruning.add(key)
        if key in self._releasing:
            self._kept_meanwhile.add(key)

    @contextlib.contextmanager
    def holding_named(self, params: JobParams) -> Iterator[None]:
        """While inside, no prune or release removes the stored images a row about to be written names already
        (another job's: a 🔁 or U/V repeats its parent's start image, reference or kept result, read before).

        Raises Refusal when one is gone by now (pruned since it was read): the row could not be rebuilt.
        """
        keys = [key for key in (params.init_image, params.mask_image, params.reference_image) if isinstance(key, str)]
        with contextlib.ExitStack() as held:
            if params.init_result is not None:
                held.enter_context(self.holding_result(params.init_result))
            for key in keys:
                self._hold(key)
                held.callback(self.settle, [key])
            inputs = self.inputs
            if inputs is not None and (
                not all(inputs.has_sync(key) for key in keys)
                or (params.init_result is not None and not inputs.has_result_sync(params.init_result))
            ):
                raise Refusal(GONE)
            yield

    def settle(self, keys: Iterable[str]) -> None:
        """The row naming ``keys`` is written (or will not be): they are no longer held for it."""
        for key in keys:
            if key in self._releasing:  # its row may be newer than what the release is reading
                self._kept_meanwhile.add(key)
            self._holding[key] -= 1
            if self._holding[key] <= 0:
                del self._holding[key]

    @contextlib.contextmanager
    def holding_result(self, job_id: int) -> Iterator[None]:
        """While inside, no prune removes ``job_id``'s kept result, which a request reads and its row will name.

        Enter before the result is read (``params.init_result``: Upscale 2x, Vary) and leave once the row is
        written or will not be; from then on the row keeps it while the job waits.
        """
        self._holding_results[job_id] += 1
        if self._results_held_while_pruning is not None:
            self._results_held_while_pruning.add(job_id)
        try:
            yield
        finally:
            self._holding_results[job_id] -= 1
            if self._holding_results[job_id] <= 0:
                del self._holding_results[job_id]

    async def drop(self, keys: Iterable[str]) -> None:
        """Kept for a request that got no row after all: stop holding them and remove what no row needs."""
        keys = list(keys)
        self.settle(keys)
        await self.release(keys)

    async def release_job(self, job: JobRecord) -> None:
        """``job`` was refused or cancelled: remove its stored images unless another row needs them."""
        params = job.params
        await self.release((params.init_image, params.mask_image, params.reference_image), job_id=job.id)

    async def release(self, keys: Iterable[str | None], *, job_id: int | None = None) -> None:
        """Remove the stored images ``keys`` that no row (but ``job_id``'s) and no request being stored needs.

        The unlink runs on the loop right after the last check: a request keeping the same image either
        is seen holding it, or finds it gone and writes it again (:meth:`keep`).
        """
        if self.inputs is None:
            return
        besides = () if job_id is None else (job_id,)
        async with self._release_lock:
            for key in {k for k in keys if isinstance(k, str)}:
                self._releasing.add(key)
                try:
                    needed = await self._store.image_in_use(key, besides=besides)
                except Exception:
                    log.exception("could not tell whether stored image %s… is still needed; kept", key[:12])
                    needed = True
                finally:
                    self._releasing.discard(key)
                if needed or self._holding[key] or key in self._kept_meanwhile:
                    self._kept_meanwhile.discard(key)
                    continue
                try:
                    if self.inputs.remove_sync(key):
                        log.info("removed stored image %s… (job %s needs it no more)", key[:12], job_id)
                except OSError as e:
                    log.warning("could not remove stored image %s…: %s", key[:12], e)

    async def result(self, job_id: int) -> bytes | None:
        """A final's stored image (the source of zoom, pan and vary), or None."""
        return await self.inputs.result(job_id) if self.inputs is not None else None

    async def keep_result(self, job_id: int, png: bytes) -> None:
        """Keep a delivered final's image for zoom, pan and vary; a failure is only logged."""
        if self.inputs is None:
            return
        try:
            await self.inputs.put_result(job_id, png)
            self._wrote(len(png))
        except OSError as e:
            log.warning("job %s: could not keep its image for zoom and pan: %s", job_id, e)

    async def prune_if_due(self) -> None:
        """Prune when the last run is an hour ago or more and none is running (called after each delivery)."""
        if self._clock() >= self._next_prune and not self._prune_lock.locked():
            await self.prune()

    async def prune(self, *, max_bytes: int | None = None) -> tuple[int, int]:
        """Apply the retention setting and disk cap to the stored images; returns files and bytes removed.

        ``max_bytes``: a tighter cap for this run (room for a write, :meth:`keep`).
        Kept: the images of jobs still to run, the finals' results they start from (an upscale's), and
        what a request holds for the row it is about to write, now or at any time while the prune runs.
        The files are chosen in a thread; each unlink runs on the loop right after that last check.
        Runs at start and after deliveries, at most once an hour.
        """
        if self.inputs is None:
            return 0, 0
        async with self._prune_lock:
            self._next_prune = self._clock() + PRUNE_EVERY_S
            self._held_while_pruning, self._results_held_while_pruning = set(self._holding), set(self._holding_results)
            try:
                removed, freed = await self._prune(self.inputs, max_bytes)
            finally:
                self._held_while_pruning = self._results_held_while_pruning = None
            try:
                self._usage = await self.inputs.usage()
            except OSError as e:
                log.warning("could not measure the image store: %s", e)
                self._usage = None
        if removed:
            log.info("pruned %d stored images (%.1f MiB)", removed, freed / 2**20)
        return removed, freed

    async def _prune(self, inputs: InputStore, max_bytes: int | None) -> tuple[int, int]:
        days, cap = self.settings.image_retention_days, self.settings.image_store_max_mb
        if max_bytes is None and cap > 0:
            max_bytes = cap * 2**20
        unfinished = await self._store.unfinished_jobs()
        keep = {
            key
            for job in unfinished
            for key in (job.params.init_image, job.params.mask_image, job.params.reference_image)
            if isinstance(key, str)
        }
        keep_results = {job.params.init_result for job in unfinished if job.params.init_result is not None}
        held, held_results = self._held_while_pruning, self._results_held_while_pruning
        assert held is not None and held_results is not None
        try:
            chosen = await asyncio.to_thread(
                inputs.prunable_sync,
                max_age_s=days * 86400 if days > 0 else None,
                max_bytes=max_bytes,
                keep=keep | held,
                keep_results=keep_results | held_results,
                now=self._clock(),
            )
        except OSError as e:
            log.warning("could not prune the stored images: %s", e)
            return 0, 0
        removed = freed = 0
        for n, (path, size) in enumerate(chosen):
            if n and n % 64 == 0:
                await asyncio.sleep(0)  # a long prune lets the loop run between files, never between check and unlink
            if path.parent == inputs.inputs:
                needed = path.stem in held
            else:
                needed = path.stem.isdigit() and int(path.stem) in held_results
            if needed:  # held by a request since the prune began: its row names it now or soon
                continue
            try:
                if inputs.unlink_sync(path):
                    removed, freed = removed + 1, freed + size
            except OSError as e:
                log.warning("could not prune stored image %s: %s", path.name, e)
        return removed, freed
