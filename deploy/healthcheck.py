"""Is the bot alive? Exit 0 (healthy) or 1 (not), one line on stdout. The Dockerfile's HEALTHCHECK runs it.

The bot has no HTTP health endpoint yet, so this checks what can be seen from outside the process:

1. a process of the same user running ``bot.py`` exists and is neither stopped (``T``) nor a zombie
   (``Z``) (read from /proc, so Linux only; the container and the systemd unit are Linux);
2. once the history database exists (``DATABASE_PATH``, default ``data/history.sqlite3``, relative to the
   working directory as for the bot), it opens read-only and answers a query within ``--timeout``
   seconds: the volume is mounted and the file is a readable SQLite database. Before the first start has
   created it (the weights are still downloading) this check passes.

It does not see the Discord connection or the GPU worker: a bot that is alive but stuck passes.
Standard library only; run it with the same working directory and environment as the bot.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

DEFAULT_DATABASE = "data/history.sqlite3"


def bot_processes(script: str, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, state letter) of every process of this user whose argv has ``script`` or ``.../script``.

    Other users' processes do not count: on a shared host they are not this bot.
    """
    found: list[tuple[int, str]] = []
    me = os.getpid()
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        names = [os.fsdecode(a) for a in argv if a]
        if any(a == script or a.endswith("/" + script) for a in names):
            # stat: "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
            found.append((int(entry.name), stat[stat.rindex(")") + 2]))
    return found


def database_path() -> Path:
    """DATABASE_PATH from the environment, else from ./.env (as the bot reads it), else the default."""
    value = os.environ.get("DATABASE_PATH")
    if value is None:
        env_file = Path(".env")
        if env_file.is_file():
            for line in env_file.read_text(errors="replace").splitlines():
                key, sep, rest = line.strip().partition("=")
                if sep and key.strip() == "DATABASE_PATH":
                    value = rest.strip().strip("'\"")
    return Path(value or DEFAULT_DATABASE).expanduser()


def check_database(path: Path, timeout: float) -> str | None:
    """None when the database answers (or does not exist yet), else what is wrong."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"history database {path} does not answer: {e}"
    return None


def check(script: str, database: Path, timeout: float) -> str | None:
    """None when healthy, else the reason."""
    procs = bot_processes(script)
    if not procs:
        return f"no {script} process is running"
    if all(state in "TZX" for _, state in procs):
        return f"{script} is not running: " + ", ".join(f"pid {pid} state {state}" for pid, state in procs)
    return check_database(database, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", default="bot.py", help="the bot's script name in its command line (bot.py)")
    parser.add_argument("--database", type=Path, default=None, help="default: DATABASE_PATH as the bot reads it")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds the database may take to answer")
    args = parser.parse_args(argv)
    problem = check(args.script, args.database or database_path(), args.timeout)
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
