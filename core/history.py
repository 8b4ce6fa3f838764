"""The history store: every job, guild settings and user preferences in one SQLite file.

``HistoryStore`` is the only owner of the database connection; cogs and the job
service call its methods and get frozen dataclasses back, never rows or SQL.
It knows nothing of the engine or of Discord: plain values go in.

Rules this module keeps:

- One ``aiosqlite`` connection in autocommit mode; every write runs inside an
  explicit ``BEGIN IMMEDIATE`` ... ``COMMIT`` so no reader ever sees half a change.
  An ``asyncio.Lock`` serialises use of the connection, so one coroutine's
  transaction never picks up another's statements.
- WAL journal, foreign keys on, a busy timeout, ``synchronous = FULL``.
- SQL with ``?`` placeholders only. The one exception is ``PRAGMA user_version``,
  which takes no parameters; its value is an ``int`` parsed from a file name.
- The schema comes from ``core/migrations/NNNN_name.sql``, applied in order on
  open, each in one transaction together with its ``PRAGMA user_version = NNNN``,
  so a migration that fails leaves the database at the version before it.
- Times are unix seconds (UTC) as floats.
- Interaction tokens (credentials while valid) are cleared once they expire: on open and
  every ``token_sweep_interval`` seconds after (:meth:`HistoryStore.clear_expired_tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_S = 5.0
IMAGE_SAFETY_MODES = ("off", "spoiler", "block")
TOKEN_SWEEP_INTERVAL_S = 60.0  # how often expired interaction tokens are cleared

JOB_KINDS: tuple[str, ...] = ("draft", "final")
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
UNFINISHED_STATUSES: tuple[str, ...] = ("queued", "running")


class HistoryError(Exception):
    """Something went wrong in the history store."""


class MigrationError(HistoryError):
    """The schema could not be brought up to date; the database is left at its last good version."""


class JobNotFound(HistoryError, LookupError):
    """No job has the given id."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class JobRecord:
    """One stored job, as it is now."""

    id: int
    kind: str  # "draft" | "final"
    mode: str  # "imagine" | "reroll" | "variation" | "upscale" | "final" | "img2img" | ... (free text)
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
    params: dict[str, Any]  # extra JSON params (aspect, init info, mask, ...)
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
    """What the caller knows about a job before it is stored (keyword arguments only)."""

    kind: str
    mode: str
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
    params: dict[str, Any] = field(default_factory=dict)
    source_message_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)
    interaction_expires_at: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"Job kind must be one of {', '.join(JOB_KINDS)}, not {self.kind!r}.")
        if not isinstance(self.mode, str) or not self.mode:
            raise ValueError("Job mode must be a non-empty string.")
        if self.count < 1:
            raise ValueError(f"Job count must be at least 1, not {self.count}.")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Job size {self.width}x{self.height} is not positive.")
        if self.parent_index is not None and (self.parent_id is None or self.parent_index < 0):
            raise ValueError("parent_index needs a parent_id and must be 0 or more.")
        if not isinstance(self.params, Mapping):
            raise TypeError(f"params must be a mapping, not {type(self.params).__name__}.")
        # Our own copy: a caller mutating its dict later cannot change this job.
        object.__setattr__(self, "params", dict(self.params))


@dataclass(frozen=True)
class GuildSettings:
    """Per-guild settings; a guild that never changed one gets these defaults."""

    guild_id: int
    image_channels: frozenset[int] = frozenset()
    max_waiting_per_user: int = 10  # a short queue per member, served fairly by the engine, before refusals
    max_jobs_per_minute: int = 12  # room to queue the whole allowance at once
    finals_outside_nsfw: bool = True
    blocked_words: tuple[str, ...] = ()
    image_safety: str = "off"  # the image safety check outside age-restricted channels: off, spoiler, block


@dataclass(frozen=True)
class UserPrefs:
    """Per-user preferences; ``None`` means "use the bot's default"."""

    user_id: int
    aspect: str | None = None
    negative_prompt: str | None = None
    style_suffix: str | None = None
    final_model: str | None = None
    dm_results: bool = False


# --------------------------------------------------------------------------- SQL

_JOB_COLUMNS = (
    "id, kind, mode, parent_id, parent_index, guild_id, channel_id, user_id, prompt, negative_prompt, "
    "model, width, height, steps, guidance, seed, count, strength, params, status, error, seeds, timings, "
    "created_at, started_at, finished_at, source_message_id, interaction_token, interaction_expires_at, "
    "result_channel_id, result_message_id, favorite"
)
_SELECT_JOBS = "SELECT " + _JOB_COLUMNS + " FROM jobs"

_SQL_INSERT_JOB = """
INSERT INTO jobs (
    kind, mode, parent_id, parent_index, guild_id, channel_id, user_id, prompt, prompt_folded,
    negative_prompt, model, width, height, steps, guidance, seed, count, strength, params,
    status, created_at, source_message_id, interaction_token, interaction_expires_at
) VALUES (
    :kind, :mode, :parent_id, :parent_index, :guild_id, :channel_id, :user_id, :prompt, :prompt_folded,
    :negative_prompt, :model, :width, :height, :steps, :guidance, :seed, :count, :strength, :params,
    'queued', :created_at, :source_message_id, :interaction_token, :interaction_expires_at
)
"""
_SQL_JOB_BY_ID = _SELECT_JOBS + " WHERE id = ?"
_SQL_JOB_BY_MESSAGE = _SELECT_JOBS + " WHERE result_message_id = ? ORDER BY id DESC LIMIT 1"
_SQL_UNFINISHED = _SELECT_JOBS + " WHERE status IN ('queued', 'running') ORDER BY created_at, id"
_SQL_COUNT_WAITING = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND user_id = ?"
_SQL_COUNT_RECENT = "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND created_at >= ?"

_SQL_MARK_RUNNING = "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'"
_SQL_FINISH = """
UPDATE jobs SET status = 'done', error = NULL, seeds = ?, timings = ?, finished_at = ?,
    result_channel_id = COALESCE(?, result_channel_id), result_message_id = COALESCE(?, result_message_id),
    steps = COALESCE(?, steps)
WHERE id = ? AND status IN ('queued', 'running')
"""
_SQL_FAIL = """
UPDATE jobs SET status = 'failed', error = ?, finished_at = ?
WHERE id = ? AND status IN ('queued', 'running')
"""
_SQL_CANCEL = """
UPDATE jobs SET status = 'cancelled', finished_at = ?
WHERE id = ? AND status IN ('queued', 'running')
"""
_SQL_REQUEUE = "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running'"
_SQL_SET_RESULT = "UPDATE jobs SET result_channel_id = ?, result_message_id = ? WHERE id = ?"
_SQL_SET_FAVORITE = "UPDATE jobs SET favorite = ? WHERE id = ?"
_SQL_CLEAR_EXPIRED_TOKENS = (
    "UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL AND interaction_expires_at <= ?"
)

_SQL_GUILD = """
SELECT max_waiting_per_user, max_jobs_per_minute, finals_outside_nsfw, blocked_words, image_safety
FROM guild_settings WHERE guild_id = ?
"""
_SQL_GUILD_CHANNELS = "SELECT channel_id FROM image_channels WHERE guild_id = ?"
_SQL_UPSERT_GUILD = """
INSERT INTO guild_settings (
    guild_id, max_waiting_per_user, max_jobs_per_minute, finals_outside_nsfw, blocked_words, image_safety
) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id) DO UPDATE SET
    max_waiting_per_user = excluded.max_waiting_per_user,
    max_jobs_per_minute = excluded.max_jobs_per_minute,
    finals_outside_nsfw = excluded.finals_outside_nsfw,
    blocked_words = excluded.blocked_words,
    image_safety = excluded.image_safety
"""
_SQL_ADD_CHANNEL = "INSERT OR IGNORE INTO image_channels (guild_id, channel_id) VALUES (?, ?)"
_SQL_REMOVE_CHANNEL = "DELETE FROM image_channels WHERE guild_id = ? AND channel_id = ?"
_SQL_CLEAR_CHANNELS = "DELETE FROM image_channels WHERE guild_id = ?"

_SQL_PREFS = """
SELECT aspect, negative_prompt, style_suffix, final_model, dm_results FROM user_prefs WHERE user_id = ?
"""
_SQL_UPSERT_PREFS = """
INSERT INTO user_prefs (user_id, aspect, negative_prompt, style_suffix, final_model, dm_results)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET
    aspect = excluded.aspect,
    negative_prompt = excluded.negative_prompt,
    style_suffix = excluded.style_suffix,
    final_model = excluded.final_model,
    dm_results = excluded.dm_results
"""


def escape_like(text: str) -> str:
    """Escape ``\\``, ``%`` and ``_`` so ``text`` matches literally in ``LIKE ... ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _history_where(
    *,
    user_id: int | None,
    guild_id: int | None,
    search: str | None,
    favorites: bool,
    channel_ids: Collection[int] | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (built from fixed fragments only) and its parameters for ``history``."""
    if user_id is None and guild_id is None:
        raise ValueError("history() needs a user_id, a guild_id or both.")
    clauses: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if guild_id is not None:
        clauses.append("guild_id = ?")
        params.append(guild_id)
    if channel_ids is not None:
        ids = sorted(set(channel_ids))
        if ids:
            clauses.append("channel_id IN (" + ", ".join("?" * len(ids)) + ")")
            params.extend(ids)
        else:
            clauses.append("0")
    if favorites:
        clauses.append("favorite = 1")
    if search:
        clauses.append("prompt_folded LIKE ? ESCAPE '\\'")
        params.append("%" + escape_like(search.casefold()) + "%")
    return " WHERE " + " AND ".join(clauses), params


def _history_sql(
    *,
    user_id: int | None,
    guild_id: int | None,
    search: str | None,
    favorites: bool,
    channel_ids: Collection[int] | None = None,
) -> tuple[str, str, list[Any]]:
    """(page query, count query, parameters) for ``history``; the page query also takes LIMIT and OFFSET."""
    where, params = _history_where(
        user_id=user_id, guild_id=guild_id, search=search, favorites=favorites, channel_ids=channel_ids
    )
    page = _SELECT_JOBS + where + " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    count = "SELECT COUNT(*) FROM jobs" + where
    return page, count, params


# --------------------------------------------------------------------------- conversions


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _job_from_row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        mode=row["mode"],
        parent_id=row["parent_id"],
        parent_index=row["parent_index"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        model=row["model"],
        width=row["width"],
        height=row["height"],
        steps=row["steps"],
        guidance=row["guidance"],
        seed=row["seed"],
        count=row["count"],
        strength=row["strength"],
        params=json.loads(row["params"]),
        status=row["status"],
        error=row["error"],
        seeds=tuple(json.loads(row["seeds"])),
        timings=json.loads(row["timings"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        source_message_id=row["source_message_id"],
        interaction_token=row["interaction_token"],
        interaction_expires_at=row["interaction_expires_at"],
        result_channel_id=row["result_channel_id"],
        result_message_id=row["result_message_id"],
        favorite=bool(row["favorite"]),
    )


def _check_count_setting(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}.")
    return value


def _check_bool_setting(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}.")
    return value


def _check_choice_setting(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _check_words(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"blocked_words must be a list of strings, not {type(value).__name__}.")
    words: list[str] = []
    for word in value:
        if not isinstance(word, str):
            raise TypeError(f"blocked_words must hold strings, not {word!r}.")
        word = word.strip()
        if word and word not in words:
            words.append(word)
    return tuple(words)


def _check_channels(value: Any) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"image_channels must be a set of channel ids, not {type(value).__name__}.")
    channels = set()
    for channel in value:
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise TypeError(f"image_channels must hold channel ids (int), not {channel!r}.")
        channels.add(channel)
    return frozenset(channels)


_GUILD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "image_channels": _check_channels,
    "max_waiting_per_user": lambda v: _check_count_setting("max_waiting_per_user", v),
    "max_jobs_per_minute": lambda v: _check_count_setting("max_jobs_per_minute", v),
    "finals_outside_nsfw": lambda v: _check_bool_setting("finals_outside_nsfw", v),
    "blocked_words": _check_words,
    "image_safety": lambda v: _check_choice_setting("image_safety", v, IMAGE_SAFETY_MODES),
}


def _check_optional_text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, not {value!r}.")
    return value


_PREF_CHECKS: dict[str, Callable[[Any], Any]] = {
    "aspect": lambda v: _check_optional_text("aspect", v),
    "negative_prompt": lambda v: _check_optional_text("negative_prompt", v),
    "style_suffix": lambda v: _check_optional_text("style_suffix", v),
    "final_model": lambda v: _check_optional_text("final_model", v),
    "dm_results": lambda v: _check_bool_setting("dm_results", v),
}


def _checked_changes(what: str, checks: Mapping[str, Callable[[Any], Any]], changes: Mapping[str, Any]) -> dict:
    unknown = sorted(set(changes) - set(checks))
    if unknown:
        raise ValueError(f"Unknown {what} field(s): {', '.join(unknown)}; known: {', '.join(sorted(checks))}.")
    return {name: checks[name](value) for name, value in changes.items()}


# --------------------------------------------------------------------------- migrations


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


# --------------------------------------------------------------------------- the store


class HistoryStore:
    """The one owner of the SQLite connection. Create it with ``await HistoryStore.open(path)``."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: str,
        *,
        schema_version: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Use :meth:`open`; this only wires up an already migrated connection."""
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._schema_version = schema_version
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token_sweeper: asyncio.Task | None = None

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        migrations_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        token_sweep_interval: float | None = TOKEN_SWEEP_INTERVAL_S,
    ) -> HistoryStore:
        """Open (or create) the database at ``path`` and bring its schema up to date.

        Parent directories are created. ``migrations_dir`` defaults to ``core/migrations``;
        ``clock`` returns unix seconds and exists for tests. ``":memory:"`` works for tests too.
        Raises :class:`MigrationError` when the schema cannot be brought up to date.
        Expired interaction tokens are cleared now and every ``token_sweep_interval`` seconds
        (None: only when :meth:`clear_expired_tokens` is called).
        """
        migrations = load_migrations(migrations_dir if migrations_dir is not None else MIGRATIONS_DIR)
        path_str = os.fspath(path)
        if path_str != ":memory:":
            Path(path_str).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; this class issues BEGIN/COMMIT itself.
        conn = await aiosqlite.connect(path_str, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute("PRAGMA busy_timeout = 5000")
            await conn.execute("PRAGMA foreign_keys = ON")
            rows = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            journal_mode = str(list(rows)[0][0]).lower()
            if journal_mode != "wal" and path_str != ":memory:":
                log.warning("SQLite at %s runs in journal mode %r, not WAL", path_str, journal_mode)
            await conn.execute("PRAGMA synchronous = FULL")
            version = await cls._migrate(conn, path_str, migrations)
        except BaseException:
            await conn.close()
            raise
        log.info("History store open at %s (schema version %d)", path_str, version)
        store = cls(conn, path_str, schema_version=version, clock=clock)
        try:
            await store.clear_expired_tokens()
        except BaseException:
            await store.close()
            raise
        if token_sweep_interval is not None:
            store._token_sweeper = asyncio.create_task(
                store._sweep_tokens(token_sweep_interval), name="history-token-sweeper"
            )
        return store

    @staticmethod
    async def _user_version(conn: aiosqlite.Connection) -> int:
        rows = list(await conn.execute_fetchall("PRAGMA user_version"))
        return int(rows[0][0])

    @classmethod
    async def _migrate(cls, conn: aiosqlite.Connection, path: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations above the database's version, each in its own transaction."""
        current = await cls._user_version(conn)
        latest = migrations[-1].version
        if current > latest:
            raise MigrationError(
                f"The database at {path} has schema version {current}, newer than this code knows ({latest}). "
                "Refusing to open it; run a newer version of the bot."
            )
        for migration in migrations:
            if migration.version <= current:
                continue
            await cls._apply(conn, migration)
            current = migration.version
            log.info("Applied migration %s to %s", migration.path.name, path)
        return current

    @classmethod
    async def _apply(cls, conn: aiosqlite.Connection, migration: Migration) -> None:
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
            if await cls._user_version(conn) != version:
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

    async def _sweep_tokens(self, interval: float) -> None:
        """Clear expired interaction tokens every ``interval`` seconds until the store closes."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.clear_expired_tokens()
            except (sqlite3.Error, HistoryError) as e:
                log.warning("could not clear expired interaction tokens: %s", e)

    async def close(self) -> None:
        """Close the connection (waiting for a running transaction). Safe to call twice."""
        sweeper, self._token_sweeper = self._token_sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        conn = self._conn
        if conn is None:
            return
        async with self._lock:
            self._conn = None
            try:
                await conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                log.debug("PRAGMA optimize failed at close", exc_info=True)
            await conn.close()
        log.info("History store at %s closed", self._path)

    async def __aenter__(self) -> HistoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def schema_version(self) -> int:
        """The schema version (``PRAGMA user_version``) after the migrations ran."""
        return self._schema_version

    @property
    def path(self) -> str:
        """Where the database lives."""
        return self._path

    # ----------------------------------------------------------------- plumbing

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise HistoryError("The history store is closed.")
        return self._conn

    @staticmethod
    async def _end(conn: aiosqlite.Connection, statement: str) -> None:
        """COMMIT or ROLLBACK, tolerating "no transaction is active".

        Statements reach the connection's thread in order, even from a task that was cancelled
        while it awaited one; so this always runs after whatever began the transaction, and it
        never leaves the shared connection inside a transaction (where the next BEGIN would fail).
        """
        try:
            await conn.execute(statement)
        except sqlite3.OperationalError:
            if conn.in_transaction:
                raise

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for reads; one snapshot (a read transaction) for everything inside."""
        async with self._lock:
            conn = self._connection()
            try:
                await conn.execute("BEGIN")
                yield conn
            finally:
                await self._end(conn, "COMMIT")

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside ``BEGIN IMMEDIATE``: committed on success, rolled back on any error."""
        async with self._lock:
            conn = self._connection()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                await self._end(conn, "ROLLBACK")
                raise

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    @staticmethod
    async def _change(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
        """Run a write and return how many rows it changed."""
        async with conn.execute(sql, params) as cursor:
            return cursor.rowcount

    async def _transition(self, job_id: int, sql: str, params: Sequence[Any], what: str) -> bool:
        """Run a guarded status update; False (and a log line) when the job was not in a state for it."""
        status: str | None = None
        async with self._write() as conn:
            changed = await self._change(conn, sql, params)
            if not changed:
                row = await self._one(conn, "SELECT status FROM jobs WHERE id = ?", (job_id,))
                if row is None:
                    raise JobNotFound(f"No job {job_id}.")
                status = row["status"]
        if changed:
            log.debug("Job %d: %s", job_id, what)
        else:
            log.warning("Job %d: not %s, it is already %s", job_id, what, status)
        return bool(changed)

    # ----------------------------------------------------------------- jobs

    async def create_job(self, job: NewJob) -> JobRecord:
        """Store a new job with status ``queued`` and return it with its id."""
        values = {f.name: getattr(job, f.name) for f in fields(job)}
        values.update(params=_dumps(job.params), prompt_folded=job.prompt.casefold(), created_at=self._clock())
        async with self._write() as conn:
            async with conn.execute(_SQL_INSERT_JOB, values) as cursor:
                job_id = cursor.lastrowid
            row = await self._one(conn, _SQL_JOB_BY_ID, (job_id,))
        if row is None:  # cannot happen inside the same transaction; a clear error if it ever does
            raise HistoryError(f"Job {job_id} vanished right after its insert.")
        record = _job_from_row(row)
        log.debug("Job %d created: %s %s by user %d", record.id, record.kind, record.mode, record.user_id)
        return record

    async def mark_running(self, job_id: int) -> bool:
        """queued -> running, stamping ``started_at``. Returns False if the job was not queued."""
        return await self._transition(job_id, _SQL_MARK_RUNNING, (self._clock(), job_id), "marked running")

    async def finish_job(
        self,
        job_id: int,
        *,
        seeds: Sequence[int],
        timings: Mapping[str, float],
        result_channel_id: int | None = None,
        result_message_id: int | None = None,
        steps: int | None = None,
    ) -> bool:
        """queued/running -> done with the result seeds and timings (seconds by phase).

        The result channel/message and the steps the engine used (a final asked for with the
        default has ``steps`` None until then) are stored when given, kept otherwise. Returns
        False, changing nothing, when the job had already finished (e.g. it was cancelled).
        """
        seeds_json = _dumps([operator.index(s) for s in seeds])
        timings_json = _dumps({str(k): float(v) for k, v in timings.items()})
        params = (seeds_json, timings_json, self._clock(), result_channel_id, result_message_id, steps, job_id)
        return await self._transition(job_id, _SQL_FINISH, params, "finished")

    async def fail_job(self, job_id: int, error: str) -> bool:
        """queued/running -> failed with ``error``. Returns False if the job had already finished."""
        return await self._transition(job_id, _SQL_FAIL, (str(error), self._clock(), job_id), "failed")

    async def cancel_job(self, job_id: int) -> bool:
        """queued/running -> cancelled. Returns whether it changed (False if it had already finished)."""
        return await self._transition(job_id, _SQL_CANCEL, (self._clock(), job_id), "cancelled")

    async def requeue(self, job_id: int) -> bool:
        """running -> queued (after a restart), clearing ``started_at``. False if it was not running."""
        return await self._transition(job_id, _SQL_REQUEUE, (job_id,), "requeued")

    async def set_result_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Record where the result was posted (any status)."""
        async with self._write() as conn:
            if not await self._change(conn, _SQL_SET_RESULT, (channel_id, message_id, job_id)):
                raise JobNotFound(f"No job {job_id}.")

    async def clear_expired_tokens(self) -> int:
        """Forget the interaction tokens that have expired (Discord accepts them for 15 minutes); returns how many."""
        async with self._write() as conn:
            cleared = await self._change(conn, _SQL_CLEAR_EXPIRED_TOKENS, (self._clock(),))
        if cleared:
            log.info("cleared %d expired interaction token%s", cleared, "s" if cleared != 1 else "")
        return cleared

    async def set_favorite(self, job_id: int, favorite: bool) -> None:
        """Mark or unmark a job as a favorite."""
        async with self._write() as conn:
            if not await self._change(conn, _SQL_SET_FAVORITE, (1 if favorite else 0, job_id)):
                raise JobNotFound(f"No job {job_id}.")

    async def get_job(self, job_id: int) -> JobRecord | None:
        """The job with this id, or None."""
        async with self._read() as conn:
            row = await self._one(conn, _SQL_JOB_BY_ID, (job_id,))
        return None if row is None else _job_from_row(row)

    async def job_by_message(self, message_id: int) -> JobRecord | None:
        """The job whose result was posted as ``message_id`` (for reactions and buttons), or None."""
        async with self._read() as conn:
            row = await self._one(conn, _SQL_JOB_BY_MESSAGE, (message_id,))
        return None if row is None else _job_from_row(row)

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs still queued or running, oldest first (to resume after a restart)."""
        async with self._read() as conn:
            rows = await conn.execute_fetchall(_SQL_UNFINISHED)
        return [_job_from_row(r) for r in rows]

    async def count_waiting(self, user_id: int) -> int:
        """How many of this user's jobs are queued or running."""
        async with self._read() as conn:
            row = await self._one(conn, _SQL_COUNT_WAITING, (user_id,))
        return int(row[0]) if row is not None else 0

    async def count_recent(self, user_id: int, since: float) -> int:
        """How many jobs this user created at or after ``since`` (unix seconds), any status."""
        async with self._read() as conn:
            row = await self._one(conn, _SQL_COUNT_RECENT, (user_id, since))
        return int(row[0]) if row is not None else 0

    async def history(
        self,
        *,
        user_id: int | None,
        guild_id: int | None = None,
        search: str | None = None,
        favorites: bool = False,
        limit: int = 10,
        offset: int = 0,
        channel_ids: Collection[int] | None = None,
    ) -> tuple[list[JobRecord], int]:
        """One page of jobs, newest first, and the total that match.

        ``user_id`` None means every user of ``guild_id``; ``guild_id`` None means every guild
        (and DMs). At least one of them is required (ValueError otherwise). ``search`` is a
        case-insensitive substring of the prompt, matched literally. All statuses are included.
        ``channel_ids`` (when given) keeps only jobs asked in those channels.
        """
        if limit < 1 or offset < 0:
            raise ValueError(f"history() needs limit >= 1 and offset >= 0, not {limit} and {offset}.")
        page_sql, count_sql, params = _history_sql(
            user_id=user_id, guild_id=guild_id, search=search, favorites=favorites, channel_ids=channel_ids
        )
        async with self._read() as conn:
            rows = await conn.execute_fetchall(page_sql, [*params, limit, offset])
            total_row = await self._one(conn, count_sql, params)
        total = int(total_row[0]) if total_row is not None else 0
        return [_job_from_row(r) for r in rows], total

    # ----------------------------------------------------------------- guild settings

    @classmethod
    async def _load_guild(cls, conn: aiosqlite.Connection, guild_id: int) -> GuildSettings:
        row = await cls._one(conn, _SQL_GUILD, (guild_id,))
        channels = frozenset(r[0] for r in await conn.execute_fetchall(_SQL_GUILD_CHANNELS, (guild_id,)))
        if row is None:
            return GuildSettings(guild_id=guild_id, image_channels=channels)
        return GuildSettings(
            guild_id=guild_id,
            image_channels=channels,
            max_waiting_per_user=row["max_waiting_per_user"],
            max_jobs_per_minute=row["max_jobs_per_minute"],
            finals_outside_nsfw=bool(row["finals_outside_nsfw"]),
            blocked_words=tuple(json.loads(row["blocked_words"])),
            image_safety=row["image_safety"],
        )

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        """This guild's settings, defaults for anything never changed."""
        async with self._read() as conn:
            return await self._load_guild(conn, guild_id)

    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings and return them all.

        Known fields: those of :class:`GuildSettings` but ``guild_id``; ``image_channels``
        replaces the whole set. Unknown fields or bad values raise ValueError (TypeError for a
        value of the wrong type) and nothing is written.
        """
        checked = _checked_changes("guild setting", _GUILD_CHECKS, changes)
        async with self._write() as conn:
            settings = replace(await self._load_guild(conn, guild_id), **checked)
            if not checked:
                return settings
            await conn.execute(
                _SQL_UPSERT_GUILD,
                (
                    guild_id,
                    settings.max_waiting_per_user,
                    settings.max_jobs_per_minute,
                    1 if settings.finals_outside_nsfw else 0,
                    _dumps(list(settings.blocked_words)),
                    settings.image_safety,
                ),
            )
            if "image_channels" in checked:
                await conn.execute(_SQL_CLEAR_CHANNELS, (guild_id,))
                await conn.executemany(_SQL_ADD_CHANNEL, [(guild_id, c) for c in sorted(settings.image_channels)])
        log.info("Guild %d settings changed: %s", guild_id, ", ".join(sorted(checked)))
        return settings

    async def add_image_channel(self, guild_id: int, channel_id: int) -> None:
        """Make ``channel_id`` an image channel of the guild (no-op if it already is)."""
        async with self._write() as conn:
            await conn.execute(_SQL_ADD_CHANNEL, (guild_id, channel_id))

    async def remove_image_channel(self, guild_id: int, channel_id: int) -> bool:
        """Stop treating ``channel_id`` as an image channel; returns whether it was one."""
        async with self._write() as conn:
            return bool(await self._change(conn, _SQL_REMOVE_CHANNEL, (guild_id, channel_id)))

    # ----------------------------------------------------------------- user preferences

    @classmethod
    async def _load_prefs(cls, conn: aiosqlite.Connection, user_id: int) -> UserPrefs:
        row = await cls._one(conn, _SQL_PREFS, (user_id,))
        if row is None:
            return UserPrefs(user_id=user_id)
        return UserPrefs(
            user_id=user_id,
            aspect=row["aspect"],
            negative_prompt=row["negative_prompt"],
            style_suffix=row["style_suffix"],
            final_model=row["final_model"],
            dm_results=bool(row["dm_results"]),
        )

    async def user_prefs(self, user_id: int) -> UserPrefs:
        """This user's preferences, defaults for anything never set."""
        async with self._read() as conn:
            return await self._load_prefs(conn, user_id)

    async def update_user_prefs(self, user_id: int, **changes: Any) -> UserPrefs:
        """Change some preferences (``None`` resets one) and return them all.

        Unknown fields raise ValueError, values of the wrong type TypeError; nothing is written then.
        """
        checked = _checked_changes("user preference", _PREF_CHECKS, changes)
        async with self._write() as conn:
            prefs = replace(await self._load_prefs(conn, user_id), **checked)
            if not checked:
                return prefs
            await conn.execute(
                _SQL_UPSERT_PREFS,
                (
                    user_id,
                    prefs.aspect,
                    prefs.negative_prompt,
                    prefs.style_suffix,
                    prefs.final_model,
                    1 if prefs.dm_results else 0,
                ),
            )
        log.debug("User %d preferences changed: %s", user_id, ", ".join(sorted(checked)))
        return prefs
