"""The fake Discord, and the small bot of :mod:`tests.fakediscord.minibot` running against it in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from tests.fakediscord import FakeDiscord
from tests.fakediscord.minibot import ErrorRecords, MiniBot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake
        fake.assert_no_errors()


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[MiniBot]:
    errors = ErrorRecords()
    discord_log = logging.getLogger("discord")
    discord_log.addHandler(errors)
    with fake.patched_discord_py():
        mini = MiniBot(int(fake.world.guild.id))
        runner = asyncio.create_task(mini.start("fake-token"))
        try:
            await asyncio.wait_for(mini.wait_until_ready(), 10)
            yield mini
        finally:
            await mini.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(runner, 5)
            discord_log.removeHandler(errors)
    assert not errors.records, [record.getMessage() for record in errors.records]
