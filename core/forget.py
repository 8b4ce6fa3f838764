"""Forgetting a member: ``/forget`` (``cogs/history.py``) and ``python bot.py --purge-user USER_ID``.

The member's unfinished jobs are cancelled first (in the bot); then their rows go in one transaction of
the history store (:meth:`HistoryStore.forget_member`, the tables of ``core.history.sql.FORGET_MEMBER``);
then the stored images no remaining row names (in the :data:`MEMBER_FOLDERS` of the image store): an
image another member's job still starts from stays. ``tests/core/test_forget_member.py`` fails when a
table with a user_id-like column, or an image folder, is not covered here.

The command line purge is for the owner: it needs the bot's database lock (``core.dblock``), so while
the bot runs it refuses with one line (the member can use ``/forget`` then, or the owner stops the bot).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.dblock import DatabaseInUse, lock_database
from core.history import Forgotten, HistoryStore
from core.history.backup import IMAGE_DIRS
from core.inputs import InputStore
from core.limits import Refusal
from core.settings import BotSettings

if TYPE_CHECKING:
    from core.jobs import JobService

log = logging.getLogger(__name__)

MEMBER_FOLDERS = IMAGE_DIRS  # the image store's folders (InputStore attributes) of member images
EXIT_REFUSED = 2  # bot.py's exit status for a settings problem: the purge could not run


@dataclass(frozen=True)
class ForgetReport:
    """What forgetting a member removed."""

    jobs: int
    prefs: int
    files: int
    cancelled: int = 0

    def line(self) -> str:
        plural = "" if self.jobs == 1 else "s"
        prefs = "your preferences" if self.prefs else "no preferences"
        return f"{self.jobs} job{plural} (favourites included), {prefs} and {self.files} stored image file(s)"


def _remove(inputs: InputStore, keys: list[str], results: tuple[int, ...]) -> int:
    removed = sum(1 for key in keys if inputs.remove_sync(key))
    return removed + sum(1 for job_id in results if inputs.unlink_sync(inputs.results / f"{int(job_id)}.png"))


async def forget_member(
    store: HistoryStore, inputs: InputStore | None, user_id: int, *, held: Callable[[str], bool] = lambda key: False
) -> ForgetReport:
    """Delete member ``user_id``'s rows, then the stored images only they used (``held`` keys stay)."""
    forgotten: Forgotten = await store.forget_member(user_id)
    files = 0
    if inputs is not None:
        keys = [key for key in forgotten.inputs if not held(key)]
        files = await asyncio.to_thread(_remove, inputs, keys, forgotten.results)
    return ForgetReport(forgotten.rows.get("jobs", 0), forgotten.rows.get("user_prefs", 0), files)


async def forget_in_bot(jobs: JobService, store: HistoryStore, user_id: int) -> ForgetReport:
    """``/forget``: cancel the member's waiting and running jobs, then forget them."""
    cancelled = 0
    for job in await store.unfinished_jobs():
        if job.user_id != user_id:
            continue
        try:
            await jobs.cancel(job.id, user_id=user_id, moderator=False, guild_id=job.guild_id)
            cancelled += 1
        except Refusal:  # it finished meanwhile: its row goes below anyway
            pass
    report = await forget_member(store, jobs.images.inputs, user_id)
    return ForgetReport(report.jobs, report.prefs, report.files, cancelled)


# ---------------------------------------------------------------- python bot.py --purge-user USER_ID


def configured_database() -> Path:
    """DATABASE_PATH from the environment and ``.env`` alone (no token needed), else its default."""
    raw = BotSettings.read().get("database_path")
    return Path(raw).expanduser() if raw else BotSettings.model_fields["database_path"].default


def add_purge_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--purge-user",
        metavar="USER_ID",
        type=int,
        help="delete everything the bot keeps about this Discord user (jobs, favourites, preferences, stored "
        "images only they used), then exit; refused while the bot runs (members use /forget then)",
    )
    return parser


def purge_user(database: Path, user_id: int) -> int:
    """``--purge-user``: takes the bot's lock (refused while the bot runs), forgets the user, prints one line."""
    try:
        lock = lock_database(database)
    except DatabaseInUse as e:
        who = f"pid {e.pid}" if e.pid is not None else "pid unknown"
        print(
            f"error: the bot ({who}) is running on {database}: the member can use /forget, "
            "or stop the bot and run --purge-user again",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    try:
        if not database.is_file():
            print(f"error: no history database at {database} (DATABASE_PATH)", file=sys.stderr)
            return EXIT_REFUSED
        report = asyncio.run(_purge(database, user_id))
    finally:
        lock.release()
    print(f"user {user_id} forgotten: {report.line().replace('your preferences', 'their preferences')}")
    return 0


async def _purge(database: Path, user_id: int) -> ForgetReport:
    async with await HistoryStore.open(database, token_sweep_interval=None) as store:
        return await forget_member(store, InputStore.beside(database), user_id)
