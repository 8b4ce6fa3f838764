"""Copies of the history database: before a migration (``VACUUM INTO``), and on demand (``bot.py --backup DIR``).

- :func:`backup_before_migration`: the schema runner calls it once, before the first pending migration of a
  database that already has a schema, and refuses to migrate when the copy cannot be made. The copy lies in
  ``<database folder>/backups/<name>-<UTC time>-before-<migration>.sqlite3``.
- :func:`backup_all`: the database through SQLite's online backup API (one consistent snapshot, the WAL's
  committed pages included, while the bot keeps writing), then the stored images (``inputs/``, ``results/``)
  beside it. It is no bot: it takes no bot lock and runs while the bot does. To restore, point
  ``DATABASE_PATH`` at the copied database: the images are where the bot looks, beside it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import time
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

BACKUPS_DIR = "backups"
IMAGE_DIRS = ("inputs", "results")  # core.inputs.InputStore, beside the database


class BackupError(RuntimeError):
    """The copy could not be made; nothing was changed."""


def _stamp(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def migration_backup_path(database: Path, migration: str, now: float | None = None) -> Path:
    """Where the copy made before ``migration`` (a file stem such as ``0006_x``) goes."""
    return database.parent / BACKUPS_DIR / f"{database.stem}-{_stamp(now)}-before-{migration}.sqlite3"


async def backup_before_migration(conn: aiosqlite.Connection, database: Path, migration: str) -> Path:
    """``VACUUM INTO`` a copy of the open database (autocommit, outside a transaction); the copy's path."""
    target = migration_backup_path(database, migration)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # two upgrades within a second: keep the first copy, make a second one
            target = target.with_name(target.stem + f"-{time.monotonic_ns()}.sqlite3")
        await conn.execute("VACUUM INTO ?", (str(target),))
    except (OSError, sqlite3.Error) as e:
        raise BackupError(f"cannot back up {database} to {target} before migrating: {e}") from e
    log.info("backed up %s to %s before migration %s", database, target, migration)
    return target


def backup_database(source: Path, target: Path) -> None:
    """Copy the database at ``source`` to ``target`` (a new file) with SQLite's backup API, while others write."""
    if not source.is_file():
        raise BackupError(f"no database at {source} (DATABASE_PATH)")
    if target.exists():
        raise BackupError(f"{target} already exists: back up into an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(source, timeout=30.0)) as src:
            with contextlib.closing(sqlite3.connect(target)) as dst:
                src.backup(dst)  # all pages in one step: one read transaction, one snapshot
                dst.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as e:
        target.unlink(missing_ok=True)
        raise BackupError(f"cannot copy {source} to {target}: {e}") from e


def _copy_images(source: Path, target: Path) -> int:
    """Copy the files of ``source`` into ``target``; files removed meanwhile (retention) are skipped."""
    copied = 0
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, destination)
        except FileNotFoundError:
            continue
        copied += 1
    return copied


def backup_all(database: Path, directory: Path) -> list[str]:
    """The database, then the stored images, into ``directory``; one line per thing copied."""
    target = directory / database.name
    backup_database(database, target)
    lines = [f"database {database} -> {target}"]
    for name in IMAGE_DIRS:
        source = database.parent / name
        if source.is_dir():
            count = _copy_images(source, directory / name)
            lines.append(f"{count} images {source} -> {directory / name}")
    return lines
