"""Busy channel end to end: 8 members x 2 /imagine into one channel whose creates and edits are limited to
5 per 5 s (429s with Discord's headers). Every job arrives, none hangs, and few edits draw a 429."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from tests.e2e.support import BASE_ENV, RunningBot, new_user, result_of
from tests.fakediscord import RateLimit
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
log = logging.getLogger(__name__)

USERS = 8
PER_USER = 2


# Small drafts, few queue-position edits: the same bot as test_e2e_load.py.
BOT_ENV = {**BASE_ENV, "DRAFT_SIZE": "256", "QUEUE_UPDATE_INTERVAL": "15"}


async def test_sixteen_jobs_into_one_rate_limited_channel_all_arrive(bot: RunningBot) -> None:
    fake = bot.fake
    fake.channel_rate_limit = RateLimit(count=5, per=5.0)
    try:
        calls_before = len(fake.calls)
        users = [new_user(fake, f"busy{n}") for n in range(USERS)]
        interactions = await asyncio.gather(
            *(
                fake.slash("imagine", {"prompt": f"busy {user.username} #{n}"}, user=user)
                for user in users
                for n in range(PER_USER)
            )
        )
        for interaction in interactions:
            assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
        results = [await result_of(interaction, files=4, timeout=300) for interaction in interactions]
        assert len({message.id for message in results}) == USERS * PER_USER
        calls = fake.calls[calls_before:]
        limited = sum(call.rate_limited for call in calls)
        per_job = len(calls) / len(interactions)
        by_route = Counter(f"{call.method} {call.route}" for call in calls if call.rate_limited)
        print(f"{limited} answers 429, {per_job:.1f} REST calls per job; 429s by route: {dict(by_route)}")
        assert limited <= 8, f"{limited} calls drew a 429"
    finally:
        fake.channel_rate_limit = None
