"""The one SQLite connection of the history store: how it is opened, used and closed.

- One ``aiosqlite`` connection in autocommit mode; every write runs inside an explicit
  ``BEGIN IMMEDIATE`` ... ``COMMIT`` (:meth:`Database.write`), every group of reads inside one
  read transaction (:meth:`Database.read`), so no reader ever sees half a change.
  An ``asyncio.Lock`` serialises use of the connection, so one coroutine's transaction never
  picks up another's statements.
- WAL journal, foreign keys on, a busy timeout, ``synchronous = FULL``; the schema is brought up
  to date (``core.history.migrations``) before anything else runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from core.history.migrations import Migration, migrate
from core.history.records import HistoryError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0


class Database:
    """The connection, its lock and its transactions. Create it with ``await Database.open(...)``."""

    def __init__(self, conn: aiosqlite.Connection, path: str, *, schema_version: int) -> None:
        """Use :meth:`open`; this only wires up an already migrated connection."""
        self._conn: aiosqlite.Connection | None = conn
        self.path = path
        self.schema_version = schema_version
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str], migrations: Sequence[Migration]) -> Database:
        """Open (or create, with its parent directories) the database at ``path`` and apply ``migrations``.

        ``":memory:"`` works too. Raises ``MigrationError`` when the schema cannot be brought up to date.
        """
        path_str = os.fspath(path)
        if path_str != ":memory:":
            Path(path_str).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; this class issues BEGIN/COMMIT itself.
        conn = await aiosqlite.connect(path_str, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute("PRAGMA busy_timeout = 5000")
            await conn.execute("PRAGMA foreign_keys = ON")
            rows = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            journal_mode = str(list(rows)[0][0]).lower()
            if journal_mode != "wal" and path_str != ":memory:":
                log.warning("SQLite at %s runs in journal mode %r, not WAL", path_str, journal_mode)
            await conn.execute("PRAGMA synchronous = FULL")
            version = await migrate(conn, path_str, migrations)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path_str, schema_version=version)

    async def close(self) -> None:
        """Close the connection (waiting for a running transaction). Safe to call twice."""
        conn = self._conn
        if conn is None:
            return
        async with self._lock:
            self._conn = None
            try:
                await conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                log.debug("PRAGMA optimize failed at close", exc_info=True)
            await conn.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._conn is None

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise HistoryError("The history store is closed.")
        return self._conn

    @staticmethod
    async def _end(conn: aiosqlite.Connection, statement: str) -> None:
        """COMMIT or ROLLBACK, tolerating "no transaction is active".

        Statements reach the connection's thread in order, even from a task that was cancelled
        while it awaited one; so this always runs after whatever began the transaction, and it
        never leaves the shared connection inside a transaction (where the next BEGIN would fail).
        """
        try:
            await conn.execute(statement)
        except sqlite3.OperationalError:
            if conn.in_transaction:
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for reads; one snapshot (a read transaction) for everything inside."""
        async with self._lock:
            conn = self._connection()
            try:
                await conn.execute("BEGIN")
                yield conn
            finally:
                await self._end(conn, "COMMIT")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside ``BEGIN IMMEDIATE``: committed on success, rolled back on any error."""
        async with self._lock:
            conn = self._connection()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                await self._end(conn, "ROLLBACK")
                raise


async def one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
    """The first row of a query, or None."""
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def change(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    """Run a write and return how many rows it changed."""
    async with conn.execute(sql, params) as cursor:
        return cursor.rowcount
