"""The history store: every job, guild settings and user preferences in one SQLite file.

What the rest of the bot imports from here; the rooms inside:

- ``records``: the frozen job records, a job's :class:`JobMode` and :class:`JobParams`, the errors.
- ``choices``: guild settings, their style presets and user preferences, and the checks on a change.
- ``migrations``: the runner over the numbered ``core/migrations/NNNN_name.sql``.
- ``connection``: the one SQLite connection, its lock and its transactions.
- ``sql``: the statements, and rows turned into records.
- ``store``: :class:`HistoryStore`, the methods the cogs and the job service call.
"""

from core.history.choices import IMAGE_SAFETY_MODES, GuildSettings, GuildStyle, UserPrefs
from core.history.migrations import MIGRATIONS_DIR, Migration, MigrationError, load_migrations
from core.history.records import (
    JOB_KINDS,
    JOB_STATUSES,
    UNFINISHED_STATUSES,
    Forgotten,
    HistoryError,
    JobMode,
    JobNotFound,
    JobParams,
    JobRecord,
    NewJob,
)
from core.history.store import HistoryStore

__all__ = [
    "IMAGE_SAFETY_MODES",
    "JOB_KINDS",
    "JOB_STATUSES",
    "MIGRATIONS_DIR",
    "UNFINISHED_STATUSES",
    "Forgotten",
    "GuildSettings",
    "GuildStyle",
    "HistoryError",
    "HistoryStore",
    "JobMode",
    "JobNotFound",
    "JobParams",
    "JobRecord",
    "Migration",
    "MigrationError",
    "NewJob",
    "UserPrefs",
    "load_migrations",
]
