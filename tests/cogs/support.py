"""The loopback harness of the cog tests: the real bot (cogs, job service, discord.py) in this process against
the loopback Discord, with the door-following fake engine; it can stop and start the bot on the same database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from bot import ImagineBot
from core.history import HistoryStore
from core.settings import BotSettings
from engine.api import EngineOffer
from tests.core.doubles import RunningFakeEngine
from tests.fakediscord import FakeDiscord, StoredMessage
from tests.fakediscord.world import World

FLAG_EPHEMERAL = 64


class Harness:
    """One loopback Discord and the bot on it; ``stop`` then ``start`` is a restart on the same database."""

    def __init__(
        self, fake: FakeDiscord, tmp_path: Path, offer: EngineOffer | None = None, settings: dict | None = None
    ) -> None:
        self.fake = fake
        self.settings = dict(settings or {})  # more BotSettings fields by name (ALLOWED_GUILDS: allowed_guilds)
        self.offer = offer  # what the fake engine offers (None: every add-on, see tests.core.doubles)
        self.db_path = tmp_path / "history.sqlite3"
        self.bot: ImagineBot | None = None
        self.engine: RunningFakeEngine | None = None
        self.store: HistoryStore | None = None
        self._task: asyncio.Task | None = None

    async def start(self, *, paused: bool = False) -> None:
        self.store = await HistoryStore.open(self.db_path)
        self.engine = RunningFakeEngine(str(self.db_path), offer=self.offer)
        self.engine.paused = paused
        self.bot = ImagineBot(
            settings=BotSettings.model_construct(  # model_construct: faster than a user may set, unchecked
                token=SecretStr("fake-token"), progress_interval=0.05, queue_update_interval=0.05, **self.settings
            ),
            store=self.store,
            engine=self.engine,
        )
        syncs = len(self.fake.calls_to("PUT", r"/commands$"))
        self._task = asyncio.create_task(self.bot.start("fake-token"))
        await self.fake.wait_for(lambda: len(self.fake.calls_to("PUT", r"/commands$")) > syncs, what="command sync")
        await self.fake.wait_for(lambda: self.fake.identified, what="IDENTIFY")

    async def stop(self) -> None:
        assert self.bot and self.engine and self.store and self._task
        await self.bot.close()
        await self._task
        await self.engine.stop()
        await self.store.close()

    async def job_of(self, message: StoredMessage, timeout: float = 5.0):
        """The finished job shown by ``message`` (the row is marked done just after the post)."""
        for _ in range(int(timeout / 0.02)):
            job = await self.store.job_by_message(int(message.id))
            if job is not None and job.status not in ("queued", "running"):
                return job
            await asyncio.sleep(0.02)
        raise AssertionError(f"no job shows message {message.id}")


@contextlib.asynccontextmanager
async def running_harness(
    tmp_path: Path, caplog, world: World | None = None, offer: EngineOffer | None = None, settings: dict | None = None
) -> AsyncIterator[Harness]:
    """The real bot against a loopback Discord (``world``, else the default one); no errors allowed in the log.

    ``offer``: what the fake engine offers (None: every add-on)."""
    async with FakeDiscord(world) as fake:
        with fake.patched_discord_py():
            harness = Harness(fake, tmp_path, offer, settings)
            await harness.start()
            try:
                yield harness
            finally:
                await harness.stop()
        fake.assert_no_errors()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def imagine(env: Harness, prompt: str, **options) -> StoredMessage:
    interaction = await env.fake.slash("imagine", {"prompt": prompt, **options})
    await env.fake.wait_for(lambda: interaction.callback_type is not None, what="the defer")
    assert interaction.callback_type == 5 and interaction.callback_delay < 3.0
    return await env.fake.wait_for(
        lambda: interaction.original if interaction.original and len(interaction.original.attachments) == 4 else None,
        what="the drafts",
    )
