"""The history store: every job, guild settings (and style presets) and user preferences in one SQLite file.

``HistoryStore`` is the only owner of the database connection (``core.history.connection``);
cogs and the job service call its methods and get frozen records back (``core.history.records``,
``core.history.choices``), never rows or SQL. It knows nothing of the engine or of Discord:
plain values go in.

- SQL with placeholders only (``core.history.sql``).
- Times are unix seconds (UTC) as floats.
- Interaction tokens (credentials while valid) are cleared once they expire: on open and
  every ``token_sweep_interval`` seconds after (:meth:`HistoryStore.clear_expired_tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiosqlite

from core.history import sql
from core.history.choices import GUILD_CHECKS, PREF_CHECKS, GuildSettings, GuildStyle, UserPrefs, checked_changes
from core.history.connection import Database, change, one
from core.history.migrations import MIGRATIONS_DIR, load_migrations
from core.history.records import Forgotten, HistoryError, JobNotFound, JobRecord, NewJob

log = logging.getLogger(__name__)

TOKEN_SWEEP_INTERVAL_S = 60.0  # how often expired interaction tokens are cleared


class HistoryStore:
    """Jobs, guild settings and preferences over one connection. Create it with ``await HistoryStore.open(path)``."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        """Use :meth:`open`; this only wires up an already migrated database."""
        self._db = db
        self._clock = clock
        self._token_sweeper: asyncio.Task[None] | None = None

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
        db = await Database.open(path, migrations)
        log.info("History store open at %s (schema version %d)", db.path, db.schema_version)
        store = cls(db, clock=clock)
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
        if self._db.closed:
            return
        await self._db.close()
        log.info("History store at %s closed", self.path)

    async def __aenter__(self) -> HistoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def schema_version(self) -> int:
        """The schema version (``PRAGMA user_version``) after the migrations ran."""
        return self._db.schema_version

    @property
    def path(self) -> str:
        """Where the database lives."""
        return self._db.path

    async def _transition(self, job_id: int, statement: str, params: Sequence[Any], what: str) -> bool:
        """Run a guarded status update; False (and a log line) when the job was not in a state for it."""
        status: str | None = None
        async with self._db.write() as conn:
            changed = await change(conn, statement, params)
            if not changed:
                row = await one(conn, "SELECT status FROM jobs WHERE id = ?", (job_id,))
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
        values = job.columns()
        values.update(params=sql.dumps(values["params"]), prompt_folded=job.prompt.casefold(), created_at=self._clock())
        async with self._db.write() as conn:
            async with conn.execute(sql.INSERT_JOB, values) as cursor:
                job_id = cursor.lastrowid
            row = await one(conn, sql.JOB_BY_ID, (job_id,))
        if row is None:  # cannot happen inside the same transaction; a clear error if it ever does
            raise HistoryError(f"Job {job_id} vanished right after its insert.")
        record = sql.job_from_row(row)
        log.debug("Job %d created: %s %s by user %d", record.id, record.kind, record.mode, record.user_id)
        return record

    async def mark_running(self, job_id: int) -> bool:
        """queued -> running, stamping ``started_at``. Returns False if the job was not queued."""
        return await self._transition(job_id, sql.MARK_RUNNING, (self._clock(), job_id), "marked running")

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
        seeds_json = sql.dumps([operator.index(s) for s in seeds])
        timings_json = sql.dumps({str(k): float(v) for k, v in timings.items()})
        params = (seeds_json, timings_json, self._clock(), result_channel_id, result_message_id, steps, job_id)
        return await self._transition(job_id, sql.FINISH, params, "finished")

    async def finish_unposted(
        self, job_id: int, *, seeds: Sequence[int], timings: Mapping[str, float], steps: int | None = None
    ) -> bool:
        """queued/running -> done when its result could not be posted anywhere: no result message.

        The status message (placeholder) it had is forgotten, so ``result_message_id`` None on a done
        row says that nothing was posted (``/show`` posts it then). False if the job had already finished.
        """
        seeds_json = sql.dumps([operator.index(s) for s in seeds])
        timings_json = sql.dumps({str(k): float(v) for k, v in timings.items()})
        params = (seeds_json, timings_json, self._clock(), steps, job_id)
        return await self._transition(job_id, sql.FINISH_UNPOSTED, params, "finished (not posted)")

    async def fail_job(self, job_id: int, error: str) -> bool:
        """queued/running -> failed with ``error``. Returns False if the job had already finished."""
        return await self._transition(job_id, sql.FAIL, (str(error), self._clock(), job_id), "failed")

    async def cancel_job(self, job_id: int) -> bool:
        """queued/running -> cancelled. Returns whether it changed (False if it had already finished)."""
        return await self._transition(job_id, sql.CANCEL, (self._clock(), job_id), "cancelled")

    async def requeue(self, job_id: int) -> bool:
        """running -> queued (after a restart), clearing ``started_at``. False if it was not running."""
        return await self._transition(job_id, sql.REQUEUE, (job_id,), "requeued")

    async def set_result_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Record where the result was posted (any status)."""
        async with self._db.write() as conn:
            if not await change(conn, sql.SET_RESULT, (channel_id, message_id, job_id)):
                raise JobNotFound(f"No job {job_id}.")

    async def clear_expired_tokens(self) -> int:
        """Forget the interaction tokens that have expired (Discord accepts them for 15 minutes); returns how many."""
        async with self._db.write() as conn:
            cleared = await change(conn, sql.CLEAR_EXPIRED_TOKENS, (self._clock(),))
        if cleared:
            log.info("cleared %d expired interaction token%s", cleared, "s" if cleared != 1 else "")
        return cleared

    async def set_favorite(self, job_id: int, favorite: bool) -> None:
        """Mark or unmark a job as a favorite."""
        async with self._db.write() as conn:
            if not await change(conn, sql.SET_FAVORITE, (1 if favorite else 0, job_id)):
                raise JobNotFound(f"No job {job_id}.")

    async def get_job(self, job_id: int) -> JobRecord | None:
        """The job with this id, or None."""
        async with self._db.read() as conn:
            row = await one(conn, sql.JOB_BY_ID, (job_id,))
        return None if row is None else sql.job_from_row(row)

    async def job_by_message(self, message_id: int) -> JobRecord | None:
        """The job whose result was posted as ``message_id`` (for reactions and buttons), or None."""
        async with self._db.read() as conn:
            row = await one(conn, sql.JOB_BY_MESSAGE, (message_id,))
        return None if row is None else sql.job_from_row(row)

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs still queued or running, oldest first (to resume after a restart)."""
        async with self._db.read() as conn:
            rows = await conn.execute_fetchall(sql.UNFINISHED)
        return [sql.job_from_row(r) for r in rows]

    async def image_in_use(self, key: str, *, besides: Collection[int] = ()) -> bool:
        """Whether a queued, running or done job other than those in ``besides`` names stored image ``key``.

        Stored images are named by content, so one file may serve several rows (as ``init_image``,
        ``mask_image`` or ``reference_image`` in their params); failed and cancelled rows do not count
        (their images go).
        """
        ids = sql.dumps(sorted({operator.index(i) for i in besides}))
        async with self._db.read() as conn:
            row = await one(conn, sql.IMAGE_IN_USE, (key, key, key, ids))
        return bool(row[0]) if row is not None else False

    async def forget_member(self, user_id: int) -> Forgotten:
        """Delete member ``user_id``'s rows (jobs with their favourites, preferences) in one transaction.

        Returns the counts and the stored images no remaining row names (``core.forget`` removes them).
        """
        async with self._db.write() as conn:
            rows = await conn.execute_fetchall(sql.MEMBER_IMAGES, (user_id,))
            counts = {table: await change(conn, forget, (user_id,)) for table, forget in sql.FORGET_MEMBER.items()}
            keys = sorted({k for r in rows for k in (r[1], r[2], r[3]) if isinstance(k, str)})
            unused = [k for k in keys if not (await one(conn, sql.IMAGE_IN_USE, (k, k, k, "[]")) or (0,))[0]]
            results = [r[0] for r in rows if not (await one(conn, sql.RESULT_IN_USE, (r[0],)) or (0,))[0]]
        log.info("Member %d forgotten: %s", user_id, counts)
        return Forgotten(counts, tuple(unused), tuple(results))

    async def count_recent(self, user_id: int, since: float) -> int:
        """How many jobs this user created at or after ``since`` (unix seconds), any status."""
        async with self._db.read() as conn:
            row = await one(conn, sql.COUNT_RECENT, (user_id, since))
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
        page_sql, count_sql, params = sql.history_sql(
            user_id=user_id, guild_id=guild_id, search=search, favorites=favorites, channel_ids=channel_ids
        )
        async with self._db.read() as conn:
            rows = await conn.execute_fetchall(page_sql, [*params, limit, offset])
            total_row = await one(conn, count_sql, params)
        total = int(total_row[0]) if total_row is not None else 0
        return [sql.job_from_row(r) for r in rows], total

    # ----------------------------------------------------------------- guild settings

    @staticmethod
    async def _load_guild(conn: aiosqlite.Connection, guild_id: int) -> GuildSettings:
        row = await one(conn, sql.GUILD, (guild_id,))
        channels = frozenset(r[0] for r in await conn.execute_fetchall(sql.GUILD_CHANNELS, (guild_id,)))
        return sql.guild_from_row(guild_id, row, channels)

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        """This guild's settings, defaults for anything never changed."""
        async with self._db.read() as conn:
            return await self._load_guild(conn, guild_id)

    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings and return them all.

        Known fields: those of :class:`GuildSettings` but ``guild_id``; ``image_channels``
        replaces the whole set. Unknown fields or bad values raise ValueError (TypeError for a
        value of the wrong type) and nothing is written.
        """
        checked = checked_changes("guild setting", GUILD_CHECKS, changes)
        async with self._db.write() as conn:
            settings = replace(await self._load_guild(conn, guild_id), **checked)
            if not checked:
                return settings
            await conn.execute(
                sql.UPSERT_GUILD,
                (
                    guild_id,
                    settings.max_waiting_per_user,
                    settings.max_jobs_per_minute,
                    1 if settings.finals_outside_nsfw else 0,
                    sql.dumps(list(settings.blocked_words)),
                    settings.image_safety,
                ),
            )
            if "image_channels" in checked:
                await conn.execute(sql.CLEAR_CHANNELS, (guild_id,))
                await conn.executemany(sql.ADD_CHANNEL, [(guild_id, c) for c in sorted(settings.image_channels)])
        log.info("Guild %d settings changed: %s", guild_id, ", ".join(sorted(checked)))
        return settings

    async def add_image_channel(self, guild_id: int, channel_id: int) -> None:
        """Make ``channel_id`` an image channel of the guild (no-op if it already is)."""
        async with self._db.write() as conn:
            await conn.execute(sql.ADD_CHANNEL, (guild_id, channel_id))

    async def remove_image_channel(self, guild_id: int, channel_id: int) -> bool:
        """Stop treating ``channel_id`` as an image channel; returns whether it was one."""
        async with self._db.write() as conn:
            return bool(await change(conn, sql.REMOVE_CHANNEL, (guild_id, channel_id)))

    async def guild_styles(self, guild_id: int) -> list[GuildStyle]:
        """This guild's style rows (its own styles, its replacements and removals of defaults), by name."""
        async with self._db.read() as conn:
            rows = await conn.execute_fetchall(sql.GUILD_STYLES, (guild_id,))
        return [sql.style_from_row(r) for r in rows]

    async def put_guild_style(self, style: GuildStyle) -> None:
        """Store ``style`` (its texts already checked, see ``core.styles``), replacing its guild's row of that name."""
        values = (style.guild_id, style.name, style.prompt_suffix, style.negative_prompt, 1 if style.hidden else 0)
        async with self._db.write() as conn:
            await conn.execute(sql.UPSERT_GUILD_STYLE, values)

    async def delete_guild_style(self, guild_id: int, name: str) -> bool:
        """Forget the guild's row for style ``name``; returns whether there was one."""
        async with self._db.write() as conn:
            return bool(await change(conn, sql.DELETE_GUILD_STYLE, (guild_id, name)))

    # ----------------------------------------------------------------- user preferences

    @staticmethod
    async def _load_prefs(conn: aiosqlite.Connection, user_id: int) -> UserPrefs:
        return sql.prefs_from_row(user_id, await one(conn, sql.PREFS, (user_id,)))

    async def user_prefs(self, user_id: int) -> UserPrefs:
        """This user's preferences, defaults for anything never set."""
        async with self._db.read() as conn:
            return await self._load_prefs(conn, user_id)

    async def update_user_prefs(self, user_id: int, **changes: Any) -> UserPrefs:
        """Change some preferences (``None`` resets one) and return them all.

        Unknown fields raise ValueError, values of the wrong type TypeError; nothing is written then.
        """
        checked = checked_changes("user preference", PREF_CHECKS, changes)
        async with self._db.write() as conn:
            prefs = replace(await self._load_prefs(conn, user_id), **checked)
            if not checked:
                return prefs
            values = (user_id, prefs.aspect, prefs.negative_prompt, prefs.style_suffix, prefs.final_model)
            await conn.execute(sql.UPSERT_PREFS, (*values, 1 if prefs.dm_results else 0))
        log.debug("User %d preferences changed: %s", user_id, ", ".join(sorted(checked)))
        return prefs
