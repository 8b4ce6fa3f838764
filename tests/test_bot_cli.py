"""bot.py as an owner runs it: --help, --backup DIR, one bot per database, the signal fallback for Windows."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import bot
from core.dblock import DatabaseInUse, lock_database
from core.history import HistoryStore
from tests.core.records import new_job

ROOT = Path(__file__).resolve().parents[1]
HOLD_LOCK = (
    "import sys\n"
    f"sys.path.insert(0, {str(ROOT)!r})\n"
    "from pathlib import Path\n"
    "from core.dblock import lock_database\n"
    "lock = lock_database(Path(sys.argv[1]))\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


def _clean_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "ENGINE_", "DATABASE_"))}
    env.update(more)
    return env


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/history.sqlite3 through core.dblock."""
    database = tmp_path / "data" / "history.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    yield database, process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_second_process_on_the_database_is_refused_until_the_first_dies(holder):
    database, process = holder
    with pytest.raises(DatabaseInUse) as refused:
        lock_database(database)
    assert refused.value.pid == process.pid
    assert f"another imagine-bot (pid {process.pid}) uses DATABASE_PATH {database}" in str(refused.value)
    process.kill()  # a crash: the kernel releases the lock, no stale lock file blocks the restart
    process.wait(timeout=30)
    lock = lock_database(database)
    try:
        assert lock.path.read_text().strip() == str(os.getpid())
    finally:
        lock.release()


def test_a_second_bot_exits_2_with_one_line_before_anything_else(holder, tmp_path):
    database, process = holder
    env = _clean_env(DISCORD_TOKEN="t", DATABASE_PATH=str(database), ENGINE_PRESET="tiny")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: another imagine-bot (pid {process.pid}) uses DATABASE_PATH {database}; stop it first"
    ]


def test_help_says_what_the_bot_does_and_exits_0(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--help"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bot.py") and "Discord bot" in done.stdout
    assert "--backup DIR" in done.stdout and "--check" in done.stdout


async def test_backup_copies_the_database_of_a_running_bot_without_its_lock(tmp_path, monkeypatch, capsys):
    database = tmp_path / "data" / "history.sqlite3"
    store = await HistoryStore.open(database)
    lock = lock_database(database)  # the running bot's lock: --backup is no bot and does not need it
    try:
        made = await store.create_job(new_job(prompt="kept in the backup", user_id=30))
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("DISCORD_TOKEN", raising=False)  # a backup needs no token
        monkeypatch.setenv("DATABASE_PATH", str(database))
        assert await asyncio.to_thread(bot.main, ["--backup", str(tmp_path / "copy")]) == 0
        assert await asyncio.to_thread(bot.main, ["--backup", str(tmp_path / "copy")]) == 2  # never overwrites
    finally:
        lock.release()
        await store.close()
    assert "database" in capsys.readouterr().out
    copy = await HistoryStore.open(tmp_path / "copy" / "history.sqlite3")
    try:
        assert await copy.get_job(made.id) == made
    finally:
        await copy.close()


async def test_stop_signals_fall_back_to_signal_signal_where_the_loop_cannot_watch_them(monkeypatch):
    loop = asyncio.get_running_loop()

    def unsupported(*_args, **_kwargs):
        raise NotImplementedError  # as Windows' event loops

    monkeypatch.setattr(loop, "add_signal_handler", unsupported)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop = asyncio.Event()
    try:
        bot._on_stop_signals(loop, stop)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and handler is not previous[signal.SIGTERM]
        handler(signal.SIGTERM, None)
        await asyncio.wait_for(stop.wait(), 5)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def test_drafting_with_sdxl_turbo_warns_of_its_non_commercial_licence():
    from engine.settings import EngineSettings

    warning = bot.draft_licence_warning(EngineSettings())
    assert warning is not None and "stabilityai/sdxl-turbo" in warning and "non-commercial" in warning
    assert bot.draft_licence_warning(EngineSettings(turbo_model="/models/other-draft")) is None
    assert bot.draft_licence_warning(EngineSettings.from_env({"ENGINE_PRESET": "tiny"})) is None
    assert bot.draft_licence_warning(None) is None  # ray: the cluster has its own settings (not warned)
