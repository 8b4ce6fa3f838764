"""One bot per history database: an exclusive lock on ``DATABASE_PATH + ".lock"``, held for the process's life.

Two bots on one database would both submit the unfinished jobs again and both answer every reaction.
``bot.py`` takes the lock right after reading its settings, before any download or model load; a second
bot finds it taken and exits with one line naming the first one's pid.

The lock is ``fcntl.flock``: the kernel releases it when the process ends however it ends (SIGKILL
included), so a restart after a crash never finds a stale lock; the pid written in the file is only
for the message. Its descriptor is not inherited by child processes (Python's default). Windows has
no ``fcntl``: there the lock is skipped with a warning (the README points Windows owners to WSL2 or
Docker, where it works). Backups (``bot.py --backup``) are not bots and do not take it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class DatabaseInUse(RuntimeError):
    """Another process holds the database's lock."""

    def __init__(self, database: Path, pid: int | None) -> None:
        self.database = database
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another imagine-bot ({who}) uses DATABASE_PATH {database}; stop it first")


class DatabaseLock:
    """The held lock; keep it referenced for as long as the process is the database's bot."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def lock_path(database: Path) -> Path:
    return Path(f"{database}.lock")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def lock_database(database: Path) -> DatabaseLock:
    """Take the database's lock (creating its folder) or raise :class:`DatabaseInUse`."""
    path = lock_path(database)
    if fcntl is None:
        log.warning("no file locks on this system: nothing stops a second bot on %s", database)
        return DatabaseLock(path, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise DatabaseInUse(database, pid) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return DatabaseLock(path, fd)
