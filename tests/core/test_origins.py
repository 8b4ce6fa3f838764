"""Origins: the one age-restriction probe, and what an origin records of where a job came from."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from core.delivery import DeliveryError
from core.origins import INTERACTION_TTL_S, InteractionOrigin, MessageOrigin, age_restricted


class Nsfw:
    def __init__(self, nsfw: bool) -> None:
        self.nsfw = nsfw

    def is_nsfw(self) -> bool:
        return self.nsfw


def test_age_restricted_asks_the_channel_and_counts_unknown_channels_as_not():
    assert age_restricted(Nsfw(True)) is True
    assert age_restricted(Nsfw(False)) is False
    assert age_restricted(None) is False  # not in the cache (a raw event)
    assert age_restricted(SimpleNamespace(id=1)) is False  # a DM or partial channel has no is_nsfw


def interaction(channel: Any) -> Any:
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return SimpleNamespace(
        user=SimpleNamespace(id=7), guild_id=3, channel_id=5, channel=channel, message=None,
        token="tok", created_at=created, extras={},
    )


def test_an_interaction_origin_takes_the_channels_age_restriction_and_token():
    origin = InteractionOrigin(interaction(Nsfw(True)))
    assert origin.age_restricted and not InteractionOrigin(interaction(Nsfw(False))).age_restricted
    fields = origin.job_fields()
    assert fields["interaction_token"] == "tok" and fields["channel_id"] == 5 and fields["user_id"] == 7
    assert fields["interaction_expires_at"] == datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp() + INTERACTION_TTL_S


def test_a_message_origin_replies_to_its_message():
    origin = MessageOrigin(SimpleNamespace(), channel_id=1, guild_id=2, user_id=3, source_message_id=4)  # type: ignore[arg-type]
    reference = origin._reference()
    assert isinstance(reference, discord.MessageReference) and reference.message_id == 4
    assert origin.job_fields()["source_message_id"] == 4 and not origin.age_restricted


async def test_an_acknowledgement_discord_never_answers_fails_clearly_within_the_bound():
    async def hang(*args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    channel = SimpleNamespace(send=hang)
    client = SimpleNamespace(get_partial_messageable=lambda channel_id, guild_id=None: channel)
    origin = MessageOrigin(client, channel_id=1, guild_id=2, user_id=3, source_message_id=4)  # type: ignore[arg-type]
    origin.call_timeout = 0.1
    with pytest.raises(DeliveryError, match="did not answer the acknowledgement"):
        await asyncio.wait_for(origin.acknowledge("⏳ Queued."), 1.0)
    await asyncio.wait_for(origin.refuse("No."), 1.0)  # logged, never waited for past the bound
