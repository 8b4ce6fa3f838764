"""Fixtures for the end-to-end tests: the real bot (``python bot.py``, tiny engine) against the loopback Discord.

Starting a bot costs 10-15 s of a 2-core CI machine (torch, models), so modules whose bots would run with
the same settings share one: a module states its bot's settings as a module constant ``BOT_ENV`` (none:
``SHARED_ENV``), the modules are ordered so that those with the same settings run one after another, and
:class:`BotPool` keeps one bot (and its fake Discord) running across them, stopped with SIGTERM (which must
exit 0, with a clean log) after the last of them. Each test checks afterwards that the fake saw nothing
real Discord would refuse and that the bot logged no Traceback/ERROR while it ran; tests use users of
their own (``new_user``) and undo what they change in the fake, since other modules use the same bot.
A module that starts its bots itself, or whose bot's settings come from another fixture (``bot_env``
overridden), says ``OWN_BOT = True`` (test_e2e_crash.py, test_e2e_cluster.py).

Every e2e test and fixture runs on the session's event loop (a bot and its fake Discord outlive the module
that started them): mark modules ``pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.support import SHARED_ENV, RunningBot, start_bot
from tests.fakediscord import FakeDiscord

_POOL_ORDER = pytest.StashKey[list[tuple[str, tuple]]]()  # (module path, settings key) in run order


def _settings_key(env: dict[str, str]) -> tuple:
    return tuple(sorted(env.items()))


def _module_env(module) -> dict[str, str]:
    return dict(getattr(module, "BOT_ENV", SHARED_ENV))


def _module_key(module) -> tuple:
    """What a module's tests are grouped by: its bot's settings, or the module itself (``OWN_BOT = True``:
    it starts its bots itself, or its bot's settings come from another fixture)."""
    if getattr(module, "OWN_BOT", False):
        return ("own bots", module.__name__)
    return _settings_key(_module_env(module))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the e2e modules with the same bot settings one after another (stable: file order otherwise)."""
    here = Path(__file__).parent
    positions = [i for i, item in enumerate(items) if here in item.path.parents]
    if not positions:
        return
    e2e = [items[i] for i in positions]
    first_seen: dict[tuple, int] = {}
    for n, item in enumerate(e2e):
        first_seen.setdefault(_module_key(item.module), n)
    e2e.sort(key=lambda item: first_seen[_module_key(item.module)])
    for i, item in zip(positions, e2e, strict=True):
        items[i] = item
    order: list[tuple[str, tuple]] = []
    for item in e2e:
        entry = (str(item.path), _module_key(item.module))
        if not order or order[-1] != entry:
            order.append(entry)
    config.stash[_POOL_ORDER] = order


class BotPool:
    """The running e2e bot and its fake Discord, reused by consecutive modules with the same settings."""

    def __init__(self, order: list[tuple[str, tuple]], cache_dir: Path, tmp: pytest.TempPathFactory) -> None:
        self._order = order
        self._cache_dir = cache_dir
        self._tmp = tmp
        self._key: tuple | None = None
        self._bot: RunningBot | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def bot_for(self, env: dict[str, str]) -> RunningBot:
        key = _settings_key(env)
        if self._bot is not None and self._key == key:
            return self._bot
        await self.stop()
        stack = contextlib.AsyncExitStack()
        fake = await stack.enter_async_context(FakeDiscord())
        try:
            self._bot = await start_bot(fake, self._tmp.mktemp("bot"), self._cache_dir, env)
        except BaseException:
            await stack.aclose()
            raise
        self._key, self._stack = key, stack
        return self._bot

    def needed_after(self, module: str) -> bool:
        """Whether a module that runs after ``module`` uses the running bot's settings."""
        paths = [path for path, _ in self._order]
        if module not in paths:
            return False
        return any(key == self._key for _, key in self._order[paths.index(module) + 1:])

    async def stop(self) -> None:
        """SIGTERM the running bot, which must exit 0 with a clean log, and close its fake Discord."""
        bot, stack = self._bot, self._stack
        self._bot = self._stack = self._key = None
        if bot is None or stack is None:
            return
        try:
            code = await bot.process.terminate(timeout=60)
        finally:
            await stack.aclose()
        assert code == 0, f"the bot exited with {code} on SIGTERM\n{bot.process.log_tail(40)}"
        bot.assert_clean_log()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bot_pool(
    request: pytest.FixtureRequest, tiny_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BotPool]:
    pool = BotPool(request.config.stash.get(_POOL_ORDER, []), tiny_cache_dir, tmp_path_factory)
    try:
        yield pool
    finally:
        await pool.stop()


@pytest.fixture(scope="module")
def bot_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment of the module's bot (on top of what BotProcess sets): the module's ``BOT_ENV``."""
    return _module_env(request.module)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fake() -> AsyncIterator[FakeDiscord]:
    """A loopback Discord of the module's own (for modules that start their bots themselves)."""
    async with FakeDiscord() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_bot(
    request: pytest.FixtureRequest, bot_pool: BotPool, bot_env: dict[str, str]
) -> AsyncIterator[RunningBot]:
    """``python bot.py`` with the module's settings, shared with the modules next to it that have the same."""
    yield await bot_pool.bot_for(bot_env)
    if not bot_pool.needed_after(str(request.path)):
        await bot_pool.stop()


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
