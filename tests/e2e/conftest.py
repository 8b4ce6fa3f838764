"""Fixtures for the end-to-end tests: the real bot (``python bot.py``, tiny engine) against the loopback Discord.

One fake Discord and one bot process per test module (starting the bot costs seconds: torch, models);
each test checks afterwards that the fake saw nothing real Discord would refuse and that the bot logged
no Traceback/ERROR while it ran. Modules change the bot's settings by overriding ``bot_env``.

Tests in a module share the module's event loop: mark them ``pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.support import BASE_ENV, RunningBot, start_bot
from tests.fakediscord import FakeDiscord


@pytest.fixture(scope="module")
def bot_env() -> dict[str, str]:
    """Environment of the module's bot (on top of what BotProcess sets); override in a module to change it."""
    return dict(BASE_ENV)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[FakeDiscord]:
    """The module's loopback Discord."""
    async with FakeDiscord() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_bot(
    fake: FakeDiscord, tiny_cache_dir: Path, bot_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningBot]:
    """``python bot.py`` for the whole module; stopped with SIGTERM at the end, which must exit 0."""
    running = await start_bot(fake, tmp_path_factory.mktemp("bot"), tiny_cache_dir, bot_env)
    try:
        yield running
    finally:
        code = await running.process.terminate(timeout=60)
    assert code == 0, f"the bot exited with {code} on SIGTERM\n{running.process.log_tail(40)}"
    running.assert_clean_log()


@pytest.fixture
def bot(module_bot: RunningBot) -> Iterator[RunningBot]:
    """The module's bot; after the test, no fake-Discord errors and no new problems in the bot's log.

    A test that provokes an error on purpose takes it with ``bot.fake.take_errors(kind)`` or adds a
    regex to ``bot.allowed_log`` (reset after the test).
    """
    fake = module_bot.fake
    since = module_bot.log_length()
    yield module_bot
    errors = fake.take_errors()
    problems = module_bot.log_problems(since)
    module_bot.allowed_log.clear()
    assert not errors, "the fake Discord saw errors:\n" + "\n".join(
        f"  {error.kind}: {error.method or ''} {error.path or ''} {error.message}" for error in errors
    )
    assert not problems, "the bot logged problems:\n" + "\n".join(problems[:20])
