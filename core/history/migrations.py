"""The schema runner: the numbered ``core/migrations/NNNN_name.sql`` files, applied in order on open.

Each migration runs in one transaction together with its ``PRAGMA user_version = NNNN``, so a
migration that fails leaves the database at the version before it. ``PRAGMA user_version`` takes
no parameters; its value is an ``int`` parsed from a file name, the one value this package puts
into SQL text. A database newer than the code is refused, never touched.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from core.history.backup import BackupError, backup_before_migration
from core.history.records import HistoryError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"


class MigrationError(HistoryError):
    """The schema could not be brought up to date; the database is left at its last good version."""


@dataclass(frozen=True)
class Migration:
    """One schema step: ``NNNN_name.sql`` brings the database to ``version`` NNNN."""

    version: int
    path: Path


_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_\-]+\.sql$")
# Transaction control inside a migration would break its all-or-nothing commit. (A trigger's
# "...; END" is allowed, which is why END is not in this list.)
_TRANSACTION_CONTROL = re.compile(r"(?:^|;)\s*(?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
_LINE_COMMENT = re.compile(r"--[^\n]*")


def load_migrations(directory: str | os.PathLike[str]) -> list[Migration]:
    """The migrations in ``directory``, numbered 1, 2, 3, ... without gaps, in order."""
    directory = Path(directory)
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix == ".sql")
    except OSError as e:
        raise MigrationError(f"Cannot read migrations from {directory}: {e}") from e
    found: dict[int, Path] = {}
    for path in paths:
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"Migration file {path.name!r} is not named NNNN_name.sql.")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"Migrations {found[version].name!r} and {path.name!r} share version {version}.")
        found[version] = path
    versions = sorted(found)
    if not versions:
        raise MigrationError(f"No migrations in {directory}.")
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"Migrations in {directory} must be numbered 0001, 0002, ... without gaps: {versions}.")
    return [Migration(v, found[v]) for v in versions]


async def user_version(conn: aiosqlite.Connection) -> int:
    """The schema version the database is at (``PRAGMA user_version``)."""
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(conn: aiosqlite.Connection, path: str, migrations: Sequence[Migration]) -> int:
    """Apply the migrations above the database's version, each in its own transaction; the new version.

    A database that already has a schema is first copied (``core.history.backup``) into ``backups/`` beside it.

    ``conn`` is in autocommit mode (``isolation_level=None``) and outside any transaction.
    """
    current = await user_version(conn)
    latest = migrations[-1].version
    if current > latest:
        raise MigrationError(
            f"The database at {path} has schema version {current}, newer than this code knows ({latest}). "
            "Refusing to open it; run a newer version of the bot."
        )
    pending = [m for m in migrations if m.version > current]
    if pending and current > 0 and path != ":memory:":  # not a brand-new database: keep a copy first
        try:
            await backup_before_migration(conn, Path(path), pending[0].path.stem)
        except BackupError as e:
            raise MigrationError(f"{e}. Not migrating without a copy; free some disk space and start again.") from e
    for migration in pending:
        await _apply(conn, migration)
        current = migration.version
        log.info("Applied migration %s to %s", migration.path.name, path)
    return current


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    name = migration.path.name
    try:
        sql = migration.path.read_text(encoding="utf-8")
    except OSError as e:
        raise MigrationError(f"Cannot read migration {name}: {e}") from e
    if _TRANSACTION_CONTROL.search(_LINE_COMMENT.sub("", sql)):
        raise MigrationError(f"Migration {name} must not contain BEGIN/COMMIT/ROLLBACK; the store adds them.")
    version = int(migration.version)  # an int from the file name: safe to put in the PRAGMA below
    # executescript runs the statements as written; BEGIN makes them (and the version bump) one
    # transaction. The lone ";" closes a last statement the file left without one.
    script = "BEGIN IMMEDIATE;\n" + sql + "\n;\nPRAGMA user_version = " + str(version) + ";\n"
    try:
        await conn.executescript(script)
        if not conn.in_transaction:
            raise MigrationError(f"Migration {name} ended its transaction early.")
        if await user_version(conn) != version:
            raise MigrationError(f"Migration {name} did not reach version {version} (unclosed comment?).")
        broken = list(await conn.execute_fetchall("PRAGMA foreign_key_check"))
        if broken:
            raise MigrationError(f"Migration {name} leaves {len(broken)} rows with broken foreign keys.")
        await conn.execute("COMMIT")
    except BaseException as e:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.Error):
            raise MigrationError(f"Migration {name} failed and was rolled back: {e}") from e
        raise
