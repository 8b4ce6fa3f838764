"""Shared fixtures of the cog tests."""

from __future__ import annotations

import logging

import pytest

from tests.fakediscord import FakeDiscord


@pytest.fixture
async def loopback(tmp_path, caplog):
    """The real bot (cogs, job service, discord.py) against the loopback Discord, with the fake engine."""
    from tests.cogs.test_loopback import Harness

    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            harness = Harness(fake, tmp_path)
            await harness.start()
            try:
                yield harness
            finally:
                await harness.stop()
        fake.assert_no_errors()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
