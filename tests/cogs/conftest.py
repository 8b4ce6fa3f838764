"""Shared fixtures of the cog tests."""

from __future__ import annotations

import pytest

from tests.cogs.support import running_harness


@pytest.fixture
async def loopback(tmp_path, caplog):
    """The real bot (cogs, job service, discord.py) against the loopback Discord, with the fake engine."""
    async with running_harness(tmp_path, caplog) as harness:
        yield harness
