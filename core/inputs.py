"""Images a job needs again after a restart, kept on disk next to the history database.

- ``inputs/<sha256>.<ext>``: start images and masks that came from attachments, region forms and
  outpaint canvases, stored by content (the same upload twice is one file). Uploads are JPEG (lossy, small,
  ``core.attachments``), masks and canvases PNG; the extension follows the bytes, and every reader takes
  any of them (files stored as PNG by older versions keep working). A job's row names them
  in ``params`` (``init_image``, ``mask_image``), and the file is written *before* the row, so a
  stored job can always be made again.
- ``results/<job id>.png``: the image of each delivered final, the source of zoom out, pan, vary and
  upscale; an upscale's or a Vary's row names it (``params.init_result``) instead of storing a copy.

Files are written atomically (temporary file, then rename). Only names this module makes are read
back: a key is 64 hex digits, a job id an int, so a row can never point outside these folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Collection
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{64}$")
INPUT_SUFFIXES = (".png", ".jpg", ".webp")  # what an input is stored as (by its bytes); readers try each
STALE_TEMP_S = 15 * 60.0  # a temporary file this old is left by a crash mid-write (a write takes well under a second)


class MissingInput(LookupError):
    """A stored image a job needs is gone (deleted by hand, or a database moved without its folder)."""


class InputStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.inputs = self.root / "inputs"
        self.results = self.root / "results"

    @classmethod
    def beside(cls, database_path: Path) -> InputStore:
        """The store in the database's folder (``data/`` by default)."""
        return cls(Path(database_path).parent)

    # ---- sync (run in a thread from async code) ------------------------------------------

    def put_sync(self, data: bytes) -> str:
        return self.put_new_sync(data)[0]

    def put_new_sync(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` (PNG, JPEG or WebP bytes) by content: its key, and the bytes written (0: already there)."""
        key = hashlib.sha256(data).hexdigest()
        path = self.inputs / f"{key}{_suffix_of(data)}"
        if path.exists():
            return key, 0
        _write_atomic(path, data)
        return key, len(data)

    def _paths(self, key: str) -> list[Path]:
        if not isinstance(key, str) or not _KEY.match(key):
            return []
        return [self.inputs / f"{key}{suffix}" for suffix in INPUT_SUFFIXES]

    def get_sync(self, key: str) -> bytes:
        paths = self._paths(key)
        if not paths:
            raise MissingInput(f"not an input key: {key!r}")
        for path in paths:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                continue
        raise MissingInput(f"input image {key[:12]}… is missing")

    def has_sync(self, key: str) -> bool:
        return any(path.is_file() for path in self._paths(key))

    def remove_sync(self, key: str) -> bool:
        """Remove a stored input; whether it was there. An unlink or three: cheap enough to run on the loop."""
        removed = False
        for path in self._paths(key):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed = True
        return removed

    def usage_sync(self) -> int:
        """The bytes all stored images (inputs and results) take now."""
        total = 0
        for folder in (self.inputs, self.results):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    continue
        return total

    def put_result_sync(self, job_id: int, png: bytes) -> None:
        _write_atomic(self.results / f"{int(job_id)}.png", png)

    def has_result_sync(self, job_id: int) -> bool:
        return (self.results / f"{int(job_id)}.png").is_file()

    def result_sync(self, job_id: int) -> bytes | None:
        try:
            return (self.results / f"{int(job_id)}.png").read_bytes()
        except FileNotFoundError:
            return None

    def prunable_sync(
        self,
        *,
        max_age_s: float | None,
        max_bytes: int | None,
        keep: Collection[str],
        now: float,
        keep_results: Collection[int] = (),
    ) -> list[tuple[Path, int]]:
        """The stored images a prune removes, oldest first, with their sizes (nothing is removed here).

        Those older than ``max_age_s``, then the oldest until all files (kept ones too) fit in ``max_bytes``
        or none but kept ones are left. Inputs named
        in ``keep`` and the results of the jobs in ``keep_results`` (what jobs still to run start from)
        are never among them. A pruned final's buttons (zoom, pan, vary, upscale) then say its image is gone.
        First come the temporary files a crash between write and rename left (older than ``STALE_TEMP_S``),
        whatever the retention and cap: nothing else would ever remove them.
        """
        kept_results = {str(int(job_id)) for job_id in keep_results}
        files: list[tuple[float, int, Path]] = []
        kept_bytes = 0  # what the kept files take counts against the cap too: they are on the same disk
        chosen: list[tuple[Path, int]] = []
        for folder in (self.inputs, self.results):
            if not folder.is_dir():
                continue
            for path in folder.glob(".*.tmp"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if stat.st_mtime < now - STALE_TEMP_S:
                    chosen.append((path, stat.st_size))
            for path in folder.iterdir():
                if path.suffix not in INPUT_SUFFIXES or path.name.startswith("."):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if path.stem in (keep if folder is self.inputs else kept_results):
                    kept_bytes += stat.st_size
                    continue
                files.append((stat.st_mtime, stat.st_size, path))
        files.sort()
        total = kept_bytes + sum(size for _, size, _ in files)
        for mtime, size, path in files:
            too_old = max_age_s is not None and mtime < now - max_age_s
            too_big = max_bytes is not None and total > max_bytes
            if too_old or too_big:
                chosen.append((path, size))
                total -= size
        return chosen

    def prune_sync(
        self,
        *,
        max_age_s: float | None,
        max_bytes: int | None,
        keep: Collection[str],
        now: float,
        keep_results: Collection[int] = (),
    ) -> tuple[int, int]:
        """Remove what :meth:`prunable_sync` names; returns how many files and bytes went."""
        removed = freed = 0
        chosen = self.prunable_sync(
            max_age_s=max_age_s, max_bytes=max_bytes, keep=keep, now=now, keep_results=keep_results
        )
        for path, size in chosen:
            if self.unlink_sync(path):
                removed, freed = removed + 1, freed + size
        return removed, freed

    def unlink_sync(self, path: Path) -> bool:
        """Remove one stored image that :meth:`prunable_sync` named; whether it was there. One unlink."""
        if path.parent not in (self.inputs, self.results):
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    # ---- async ------------------------------------------------------------------------------

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self.put_sync, data)

    async def put_new(self, data: bytes) -> tuple[str, int]:
        return await asyncio.to_thread(self.put_new_sync, data)

    async def usage(self) -> int:
        return await asyncio.to_thread(self.usage_sync)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get_sync, key)

    async def put_result(self, job_id: int, png: bytes) -> None:
        await asyncio.to_thread(self.put_result_sync, job_id, png)

    async def result(self, job_id: int) -> bytes | None:
        return await asyncio.to_thread(self.result_sync, job_id)


def _suffix_of(data: bytes) -> str:
    """The file name's suffix for image bytes, by their signature (PNG when unsure, as before)."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".png"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so readers see the old file or the new one, never part of one.

    The temporary file has a unique name (``mkstemp``): two writers of the same path at once
    (two people pressing Vary on one fresh final) each rename their own complete copy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
