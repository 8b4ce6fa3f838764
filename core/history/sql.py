"""The SQL of the history store, and the mapping between its rows and the records.

Fixed statements with ``?`` (or ``:name``) placeholders only; the one WHERE clause that varies
(:func:`history_sql`) is put together from fixed fragments, its values passed as parameters.
JSON columns are written by :func:`dumps` and read back into records by :func:`job_from_row`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from core.history.choices import GuildSettings, GuildStyle, UserPrefs
from core.history.records import HistoryError, JobMode, JobParams, JobRecord

JOB_COLUMNS = (
    "id, kind, mode, parent_id, parent_index, guild_id, channel_id, user_id, prompt, negative_prompt, "
    "model, width, height, steps, guidance, seed, count, strength, params, status, error, seeds, timings, "
    "created_at, started_at, finished_at, source_message_id, interaction_token, interaction_expires_at, "
    "result_channel_id, result_message_id, favorite"
)
SELECT_JOBS = "SELECT " + JOB_COLUMNS + " FROM jobs"

INSERT_JOB = """
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
JOB_BY_ID = SELECT_JOBS + " WHERE id = ?"
JOB_BY_MESSAGE = SELECT_JOBS + " WHERE result_message_id = ? ORDER BY id DESC LIMIT 1"
UNFINISHED = SELECT_JOBS + " WHERE status IN ('queued', 'running') ORDER BY created_at, id"
COUNT_RECENT = "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND created_at >= ?"

MARK_RUNNING = "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'"
FINISH = """
UPDATE jobs SET status = 'done', error = NULL, seeds = ?, timings = ?, finished_at = ?,
    result_channel_id = COALESCE(?, result_channel_id), result_message_id = COALESCE(?, result_message_id),
    steps = COALESCE(?, steps)
WHERE id = ? AND status IN ('queued', 'running')
"""
FAIL = """
UPDATE jobs SET status = 'failed', error = ?, finished_at = ?
WHERE id = ? AND status IN ('queued', 'running')
"""
CANCEL = """
UPDATE jobs SET status = 'cancelled', finished_at = ?
WHERE id = ? AND status IN ('queued', 'running')
"""
FINISH_UNPOSTED = """
UPDATE jobs SET status = 'done', error = NULL, seeds = ?, timings = ?, finished_at = ?,
    result_channel_id = NULL, result_message_id = NULL, steps = COALESCE(?, steps)
WHERE id = ? AND status IN ('queued', 'running')
"""
REQUEUE = "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running'"
SET_RESULT = "UPDATE jobs SET result_channel_id = ?, result_message_id = ? WHERE id = ?"
SET_FAVORITE = "UPDATE jobs SET favorite = ? WHERE id = ?"
# Rows that may need a stored image again: to run, or to be made again (🔁, /show, U/V). A failed or
# cancelled row does not hold its image: it was removed when the job was refused or cancelled.
# Each key has its own index (migration 0005); the parameters are the image's key three times, then the ids.
IMAGE_IN_USE = """
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE status IN ('queued', 'running', 'done')
        AND (json_extract(params, '$.init_image') = ? OR json_extract(params, '$.mask_image') = ?
            OR json_extract(params, '$.reference_image') = ?)
        AND id NOT IN (SELECT value FROM json_each(?))
)
"""
# Forgetting a member (HistoryStore.forget_member): every table that keeps member data, and its statement.
# tests/core/test_forget_member.py fails when a table with a user_id-like column is missing here.
FORGET_MEMBER = {
    "jobs": "DELETE FROM jobs WHERE user_id = ?",
    "user_prefs": "DELETE FROM user_prefs WHERE user_id = ?",
}
MEMBER_IMAGES = """
SELECT id, json_extract(params, '$.init_image'), json_extract(params, '$.mask_image'),
    json_extract(params, '$.reference_image') FROM jobs WHERE user_id = ?
"""
# A kept result another row starts from (an upscale or a Vary of it names it as params.init_result).
RESULT_IN_USE = """
SELECT EXISTS (
    SELECT 1 FROM jobs WHERE status IN ('queued', 'running', 'done') AND json_extract(params, '$.init_result') = ?
)
"""
CLEAR_EXPIRED_TOKENS = (
    "UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL AND interaction_expires_at <= ?"
)

GUILD = """
SELECT max_waiting_per_user, max_jobs_per_minute, finals_outside_nsfw, blocked_words, image_safety
FROM guild_settings WHERE guild_id = ?
"""
GUILD_CHANNELS = "SELECT channel_id FROM image_channels WHERE guild_id = ?"
UPSERT_GUILD = """
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
ADD_CHANNEL = "INSERT OR IGNORE INTO image_channels (guild_id, channel_id) VALUES (?, ?)"
REMOVE_CHANNEL = "DELETE FROM image_channels WHERE guild_id = ? AND channel_id = ?"
CLEAR_CHANNELS = "DELETE FROM image_channels WHERE guild_id = ?"

PREFS = """
SELECT aspect, negative_prompt, style_suffix, final_model, dm_results FROM user_prefs WHERE user_id = ?
"""
UPSERT_PREFS = """
INSERT INTO user_prefs (user_id, aspect, negative_prompt, style_suffix, final_model, dm_results)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET
    aspect = excluded.aspect,
    negative_prompt = excluded.negative_prompt,
    style_suffix = excluded.style_suffix,
    final_model = excluded.final_model,
    dm_results = excluded.dm_results
"""

GUILD_STYLES = """
SELECT guild_id, name, prompt_suffix, negative_prompt, hidden FROM guild_styles WHERE guild_id = ? ORDER BY name
"""
UPSERT_GUILD_STYLE = """
INSERT INTO guild_styles (guild_id, name, prompt_suffix, negative_prompt, hidden) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (guild_id, name) DO UPDATE SET
    prompt_suffix = excluded.prompt_suffix,
    negative_prompt = excluded.negative_prompt,
    hidden = excluded.hidden
"""
DELETE_GUILD_STYLE = "DELETE FROM guild_styles WHERE guild_id = ? AND name = ?"


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


def history_sql(
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
    page = SELECT_JOBS + where + " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    count = "SELECT COUNT(*) FROM jobs" + where
    return page, count, params


def dumps(value: Any) -> str:
    """Compact JSON with sorted keys, as every JSON column is written (NaN is refused: it is not JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _mode(row: sqlite3.Row) -> JobMode:
    try:
        return JobMode(row["mode"])
    except ValueError:
        raise HistoryError(f"Job {row['id']} has the mode {row['mode']!r}, which this bot does not know.") from None


def job_from_row(row: sqlite3.Row) -> JobRecord:
    """The record of one ``SELECT_JOBS`` row."""
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        mode=_mode(row),
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
        params=JobParams.from_json(json.loads(row["params"]), job_id=row["id"]),
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


def style_from_row(row: sqlite3.Row) -> GuildStyle:
    """The record of one ``GUILD_STYLES`` row."""
    return GuildStyle(
        guild_id=row["guild_id"],
        name=row["name"],
        prompt_suffix=row["prompt_suffix"],
        negative_prompt=row["negative_prompt"],
        hidden=bool(row["hidden"]),
    )


def guild_from_row(guild_id: int, row: sqlite3.Row | None, channels: frozenset[int]) -> GuildSettings:
    """A guild's settings from its row (None: never changed, the defaults) and its image channels."""
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


def prefs_from_row(user_id: int, row: sqlite3.Row | None) -> UserPrefs:
    """A member's preferences from their row (None: never set, the defaults)."""
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
