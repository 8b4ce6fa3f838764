"""The history database as another process sees it: a second, plain ``sqlite3`` connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to the same file (use it as a context manager)."""
    return sqlite3.connect(path)


def user_version(path: Path) -> int:
    with raw(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with raw(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def stored_tokens(path: Path) -> dict[int, str | None]:
    with raw(path) as conn:
        return dict(conn.execute("SELECT id, interaction_token FROM jobs ORDER BY id"))


def stored_params(path: Path, job_id: int) -> str:
    """The ``params`` column of a job, as the text that was written."""
    with raw(path) as conn:
        return conn.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
