"""What the end-to-end tests share: the fake Discord, the running bot, read-only DB access.

The bot under test is the unmodified ``python bot.py`` (see :class:`tests.fakediscord.BotProcess`); tests
look at it only from outside: the REST calls and messages the fake recorded, the SQLite file (opened
read-only) and the bot's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakediscord import BotProcess, FakeDiscord, FakeUser, Interaction, StoredMessage
from tests.fakediscord.records import FLAG_EPHEMERAL, RecordedCall

# Settings every e2e bot gets (the engine reads FINAL_STEPS; the rest are core.settings.BotSettings).
BASE_ENV: dict[str, str] = {
    "LOG_LEVEL": "INFO",
    "FINAL_STEPS": "2",
    "PROGRESS_INTERVAL": "0.2",
    "QUEUE_UPDATE_INTERVAL": "0.5",
    "SHUTDOWN_TIMEOUT": "20",
}

# The session's shared bot (tests/e2e/conftest.py: shared_bot), for every module that needs no settings of its
# own. No upscaler model: Lanczos stands in for "Upscale (subtle)" (the tiny ESRGAN takes minutes on a 1024 px
# final on two shared CPU cores; tests/engine runs it on small images). "Upscale (creative)": one 2048 px tile
# (the tiny preset's 128 px tiles would be 441; tests/engine blends many).
SHARED_ENV: dict[str, str] = {**BASE_ENV, "UPSCALER_MODEL": "off", "UPSCALE_TILE": "2048"}

RESULT_TIMEOUT = 60.0  # seconds for one job's result on a busy 2-core CPU
QUIET_PERIOD = 1.5  # seconds of silence that show an event was ignored
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROBLEM = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|\bCRITICAL\b")
# REST routes that create or edit a message (what must carry allowed_mentions).
_MESSAGE_ROUTES = re.compile(
    r"^/webhooks/\d+/[^/]+(/messages/[^/]+)?$|^/channels/\d+/messages(/\d+)?$|^/interactions/\d+/[^/]+/callback$"
)


# --------------------------------------------------------------------------- the bot's database


def open_db(path: Path) -> sqlite3.Connection:
    """The bot's SQLite file, opened read-only (the bot keeps writing it)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    connection.row_factory = sqlite3.Row
    return connection


def query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows as dicts; JSON columns ``seeds``, ``params`` and ``timings`` decoded."""
    connection = open_db(path)
    try:
        rows = [dict(row) for row in connection.execute(sql, params)]
    finally:
        connection.close()
    for row in rows:
        for column in ("seeds", "params", "timings"):
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
    return rows


# --------------------------------------------------------------------------- the running bot


@dataclass
class RunningBot:
    """One ``python bot.py`` against ``fake``; tests use its fake, its DB and its log."""

    fake: FakeDiscord
    process: BotProcess
    allowed_log: list[str] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.process.database_path

    def jobs(self, where: str = "1", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Job rows matching an SQL condition, oldest first."""
        return query(self.db_path, f"SELECT * FROM jobs WHERE {where} ORDER BY id", params)

    def job_for_message(self, message: StoredMessage | str) -> dict[str, Any] | None:
        message_id = message.id if isinstance(message, StoredMessage) else message
        rows = self.jobs("result_message_id = ?", (int(message_id),))
        return rows[-1] if rows else None

    async def finished_job_for(self, message: StoredMessage | str, timeout: float = 10.0) -> dict[str, Any]:
        """The job shown by ``message`` once its row is finished (the row is written just after the upload)."""
        message_id = message.id if isinstance(message, StoredMessage) else message

        def finished() -> dict[str, Any] | None:
            job = self.job_for_message(message_id)
            return job if job is not None and job["status"] in ("done", "failed", "cancelled") else None

        return await self.fake.wait_for(finished, timeout, f"a finished job row for message {message_id}")

    def log_length(self) -> int:
        return len(self.process.log)

    def log_problems(self, since: int = 0, allowed: Iterable[str] = ()) -> list[str]:
        """Traceback/ERROR/CRITICAL lines written after offset ``since`` (colours stripped), minus ``allowed``."""
        excuses = [re.compile(pattern) for pattern in [*self.allowed_log, *allowed]]
        text = _ANSI.sub("", self.process.log[since:])
        return [line for line in text.splitlines() if _PROBLEM.search(line)
                and not any(excuse.search(line) for excuse in excuses)]

    def assert_clean_log(self, since: int = 0) -> None:
        problems = self.log_problems(since)
        if problems:
            listing = "\n".join(problems[:20])
            raise AssertionError(f"the bot logged problems:\n{listing}\n--- bot log (tail) ---\n"
                                 f"{self.process.log_tail(80)}")


async def start_bot(
    fake: FakeDiscord,
    workdir: Path,
    cache_dir: Path,
    env: dict[str, str],
    *,
    database_path: Path | None = None,
) -> RunningBot:
    """Start ``python bot.py`` and wait until it has IDENTIFYed and synced its commands."""
    process = BotProcess(fake, workdir, cache_dir=cache_dir, env=env, database_path=database_path)
    await process.start()
    try:
        await process.wait_ready(timeout=120)
    except BaseException:
        await process.kill()
        raise
    return RunningBot(fake, process)


# --------------------------------------------------------------------------- waiting for what users see


def _with_files(messages: list[StoredMessage], count: int) -> list[StoredMessage]:
    """Messages with at least ``count`` result files (a live preview of a running final is no result)."""
    return [
        message
        for message in messages
        if sum(a.filename != "preview.png" for a in message.attachments) >= count
    ]


async def result_of(interaction: Interaction, files: int = 1, timeout: float = RESULT_TIMEOUT) -> StoredMessage:
    """The one visible message of ``interaction`` that carries at least ``files`` attachments."""
    messages = await interaction.wait_messages(lambda found: bool(_with_files(found, files)), timeout)
    results = _with_files(messages, files)
    assert len(results) == 1, f"expected one result for {interaction.name!r}, got {len(results)}"
    return results[0]


async def refusal_of(interaction: Interaction, timeout: float = 10.0) -> StoredMessage:
    """The answer of an interaction that must be refused: one ephemeral message without files."""
    await interaction.wait_callback(timeout)
    [message] = await interaction.wait_messages(lambda found: len(found) >= 1, timeout)
    assert message.flags & FLAG_EPHEMERAL, f"refusal is not ephemeral: {message.content!r}"
    assert not message.attachments, f"refusal carries files: {[a.filename for a in message.attachments]}"
    assert 0 < len(message.content) <= 400, f"refusal is not a short text: {message.content!r}"
    return message


def bot_message_ids(fake: FakeDiscord) -> set[str]:
    """Ids of every message the bot wrote so far (deleted ones too)."""
    return {message.id for message in fake.messages(author=fake.world.bot, include_deleted=True)}


async def reply_with_files(
    fake: FakeDiscord,
    to: StoredMessage,
    files: int = 1,
    timeout: float = RESULT_TIMEOUT,
    *,
    exclude: Iterable[str] = (),
) -> StoredMessage:
    """A bot message in ``to``'s channel replying to it with at least ``files`` attachments (not in ``exclude``)."""
    skip = set(exclude)
    return await fake.wait_for(
        lambda: next(
            (message for message in fake.bot_messages(fake.world.channels[to.channel_id])
             if message.reply_to == to.id and len(message.attachments) >= files and message.id not in skip),
            None,
        ),
        timeout,
        f"a reply with {files} file(s) to message {to.id}",
    )


async def quiet(fake: FakeDiscord, seconds: float = QUIET_PERIOD) -> list[RecordedCall]:
    """Let ``seconds`` pass; returns the REST calls the bot made meanwhile."""
    before = len(fake.calls)
    await asyncio.sleep(seconds)
    return fake.calls[before:]


def status_texts(message: StoredMessage) -> list[str]:
    """Every text the message showed, oldest first (its edit history, then now)."""
    return [snapshot.content for snapshot in message.history] + [message.content]


def new_user(fake: FakeDiscord, name: str) -> FakeUser:
    """A fresh member of the default guild: its own per-user limits, its own history."""
    return fake.make_user(f"{name}-{len(fake.world.users)}")


# --------------------------------------------------------------------------- mentions


def message_calls(fake: FakeDiscord) -> list[tuple[RecordedCall, dict[str, Any]]]:
    """Every REST call of the bot that posted or edited message content, with the message body it sent."""
    found = []
    for call in fake.calls:
        if call.method not in ("POST", "PATCH") or not _MESSAGE_ROUTES.search(call.path):
            continue
        body = call.json if isinstance(call.json, dict) else {}
        if call.path.endswith("/callback"):
            body = body.get("data") or {}
        if body.get("content") or body.get("embeds") or call.files:
            found.append((call, body))
    return found


def assert_no_mentions(fake: FakeDiscord) -> None:
    """Everything the bot posted parses no mention: ``allowed_mentions.parse`` empty, nobody pinged."""
    calls = message_calls(fake)
    assert calls, "the bot posted nothing"
    for call, body in calls:
        allowed = body.get("allowed_mentions")
        assert isinstance(allowed, dict), f"{call!r} has no allowed_mentions: {body.get('content')!r}"
        assert allowed.get("parse") == [], f"{call!r} parses mentions: {allowed}"
        assert not allowed.get("users") and not allowed.get("roles"), f"{call!r} allows mentions: {allowed}"
        assert not allowed.get("replied_user"), f"{call!r} pings the replied user: {allowed}"
    for message in fake.messages(author=fake.world.bot, include_deleted=True):
        assert not message.mention_everyone, f"message {message.id} pings everyone: {message.content!r}"
        assert message.mention_ids == [], f"message {message.id} pings {message.mention_ids}: {message.content!r}"


# --------------------------------------------------------------------------- raw interactions


@contextlib.contextmanager
def without_option_bounds(fake: FakeDiscord, command: str, option: str) -> Iterator[None]:
    """Drop the synced bounds of one option, as a raw interaction (an old client, a stale sync) may.

    Discord's client enforces ``min_value``/``max_value``/``max_length``; the bot must check again.
    """
    saved = copy.deepcopy(fake.commands)
    try:
        for commands in fake.commands.values():
            for entry in commands:
                if entry.get("name") != command:
                    continue
                for item in entry.get("options") or []:
                    if item.get("name") == option:
                        for key in ("min_value", "max_value", "min_length", "max_length"):
                            item.pop(key, None)
        yield
    finally:
        fake.commands = saved


def synced_option(fake: FakeDiscord, command: str, option: str) -> dict[str, Any]:
    """The synced schema of one option of a global command."""
    [entry] = [entry for entry in fake.synced_commands() if entry["name"] == command]
    [item] = [item for item in entry.get("options") or [] if item["name"] == option]
    return item
