"""Run the real bot (``python bot.py``) as a subprocess against a :class:`FakeDiscord`.

::

    async with FakeDiscord() as fake:
        bot = BotProcess(fake, tmp_path, cache_dir=engine_cache)
        await bot.start()
        try:
            await bot.wait_ready()
            ...
        finally:
            await bot.terminate()
        bot.assert_clean_log()
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from .server import FakeDiscord
from .state import WaitTimeout

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBLEM_RE = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|\bCRITICAL\b")
# discord.py colours its log where it believes a terminal or Docker is: "\x1b[31mERROR" has no word boundary.
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


class BotProcess:
    """``python bot.py`` in the repository root, pointed at ``fake``, its output in ``log_path``.

    ``script`` replaces ``bot.py`` (the fake's own tests run a stand-in); the working directory stays the
    repository root, as for ``./dev.sh run``.

    The environment is the test's own minus any ``DISCORD_*`` variable, plus ``PYTHONUNBUFFERED=1``,
    the fake's URLs and token, ``ENGINE_PRESET=tiny``, ``DATABASE_PATH`` (default ``workdir/bot.sqlite3``),
    ``ENGINE_CACHE_DIR`` (``cache_dir``) and finally ``env`` (which wins).
    """

    def __init__(
        self,
        fake: FakeDiscord,
        workdir: Path,
        *,
        cache_dir: Path | str,
        env: Mapping[str, str] | None = None,
        token: str = "fake-token",
        database_path: Path | None = None,
        log_path: Path | None = None,
        args: Sequence[str] = (),
        python: str = sys.executable,
        script: Path | None = None,
    ) -> None:
        self.fake = fake
        self.workdir = Path(workdir)
        self.database_path = database_path or self.workdir / "bot.sqlite3"
        self.log_path = log_path or self.workdir / "bot.log"
        self.command = [python, str(script or REPO_ROOT / "bot.py"), *args]
        environment = {key: value for key, value in os.environ.items() if not key.startswith("DISCORD_")}
        environment.update(
            PYTHONUNBUFFERED="1",
            ENGINE_PRESET="tiny",
            DATABASE_PATH=str(self.database_path),
            ENGINE_CACHE_DIR=str(cache_dir),
        )
        environment.update(fake.bot_env(token))
        environment.update(env or {})
        self.env = environment
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None
        self._identifies_before = 0
        self._syncs_before = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the process (its stdout and stderr go to ``log_path``, appended)."""
        if self._process is not None:
            raise RuntimeError("the bot process was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._identifies_before = len(self.fake.gateway.identifies)
        self._syncs_before = self._sync_count()
        self._log_file = self._open_log()
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            cwd=str(REPO_ROOT),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
        )

    def _open_log(self) -> IO[bytes]:
        """The log file, opened for appending; it stays open until the child has exited."""
        return self.log_path.open("ab")

    def _sync_count(self) -> int:
        return len([call for call in self.fake.calls_to("PUT", r"/commands$") if call.status == 200])

    async def wait_ready(self, timeout: float = 120.0, *, require_sync: bool = True) -> None:
        """Wait until the fake saw this process IDENTIFY (live gateway) and, with ``require_sync``, PUT its
        commands. Fails at once, log attached, if the process exits first."""
        process = self._require_process()

        def ready() -> bool:
            identified = len(self.fake.gateway.identifies) > self._identifies_before and self.fake.gateway.connected
            synced = not require_sync or self._sync_count() > self._syncs_before
            return identified and synced

        waiting = asyncio.ensure_future(self.fake.wait_for(ready, timeout, "the bot to IDENTIFY and sync commands"))
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, exited):
                if not task.done():
                    task.cancel()
        if waiting in done:
            try:
                waiting.result()
            except WaitTimeout as exc:
                raise AssertionError(f"{exc}\n--- bot log (tail) ---\n{self.log_tail()}") from None
            return
        raise AssertionError(
            f"the bot exited with code {process.returncode} before it was ready\n--- bot log (tail) ---\n"
            f"{self.log_tail()}"
        )

    async def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        process = self._require_process()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        self._close_log()
        assert process.returncode is not None
        return process.returncode

    async def kill(self) -> int:
        """SIGKILL now (a crash, as far as the bot can tell). Returns the exit code."""
        process = self._require_process()
        if process.returncode is None:
            process.kill()
            await process.wait()
        self._close_log()
        assert process.returncode is not None
        return process.returncode

    async def __aenter__(self) -> BotProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.returncode is None:
            await self.terminate()

    def _require_process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("the bot process was not started")
        return self._process

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ------------------------------------------------------------------ state and log

    @property
    def pid(self) -> int | None:
        """The process id (None before start)."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (None while running or before start)."""
        return None if self._process is None else self._process.returncode

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.returncode is None

    @property
    def log(self) -> str:
        """Everything the bot wrote so far (stdout and stderr)."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log.splitlines()[-lines:])

    def log_problems(self, allowed: Iterable[str] = ()) -> list[str]:
        """Log lines with ``Traceback``, ``ERROR`` or ``CRITICAL``, except those a regex in ``allowed`` matches."""
        excuses = [re.compile(pattern) for pattern in allowed]
        return [
            line
            for line in ANSI_RE.sub("", self.log).splitlines()
            if PROBLEM_RE.search(line) and not any(excuse.search(line) for excuse in excuses)
        ]

    def assert_clean_log(self, allowed: Iterable[str] = ()) -> None:
        """Fail, with the log's tail, when :meth:`log_problems` finds anything."""
        problems = self.log_problems(allowed)
        if problems:
            listing = "\n".join(problems[:20])
            raise AssertionError(f"the bot logged problems:\n{listing}\n--- bot log (tail) ---\n{self.log_tail()}")
