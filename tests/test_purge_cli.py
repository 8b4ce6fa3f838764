"""``python bot.py --purge-user USER_ID``: the owner forgets a member from the command line; refused (one
line, exit 2, nothing deleted) while a bot holds the database's lock, since the bot owns the database then."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

import bot
from core.history import HistoryStore
from tests.core.records import new_job
from tests.test_bot_cli import HOLD_LOCK

ME, OTHER = 30, 31


async def _fill(database) -> None:
    async with await HistoryStore.open(database, token_sweep_interval=None) as store:
        await store.create_job(new_job(user_id=ME, prompt="mine"))
        await store.create_job(new_job(user_id=OTHER, prompt="theirs"))
        await store.update_user_prefs(ME, aspect="16:9")


async def _totals(database) -> tuple[int, int, str | None]:
    async with await HistoryStore.open(database, token_sweep_interval=None) as store:
        return (
            (await store.history(user_id=ME))[1],
            (await store.history(user_id=OTHER))[1],
            (await store.user_prefs(ME)).aspect,
        )


def test_purge_is_refused_while_the_bot_runs_and_works_when_it_does_not(tmp_path, monkeypatch, capsys):
    database = tmp_path / "data" / "history.sqlite3"
    asyncio.run(_fill(database))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)  # the purge needs no token
    monkeypatch.setenv("DATABASE_PATH", str(database))
    bot_process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert bot_process.stdout is not None and bot_process.stdout.readline().strip() == "locked"
        assert bot.main(["--purge-user", str(ME)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: the bot (pid {bot_process.pid}) is running on {database}: the member can use /forget, "
            "or stop the bot and run --purge-user again"
        ]
        assert asyncio.run(_totals(database)) == (1, 1, "16:9")  # nothing was deleted
    finally:
        bot_process.kill()
        bot_process.wait(timeout=30)
    assert bot.main(["--purge-user", str(ME)]) == 0
    out = capsys.readouterr().out
    assert f"user {ME} forgotten: 1 job" in out and "their preferences" in out
    assert asyncio.run(_totals(database)) == (0, 1, None)


def test_purge_without_a_database_creates_none(tmp_path, monkeypatch, capsys):
    database = tmp_path / "nowhere" / "history.sqlite3"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_PATH", str(database))
    assert bot.main(["--purge-user", "5"]) == 2
    assert "no history database" in capsys.readouterr().err
    assert not database.exists()


def test_help_lists_the_purge(capsys):
    with pytest.raises(SystemExit):
        bot.main(["--help"])
    assert "--purge-user USER_ID" in capsys.readouterr().out
