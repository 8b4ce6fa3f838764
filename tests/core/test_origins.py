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


def http_error(kind: type[discord.HTTPException], status: int) -> discord.HTTPException:
    return kind(SimpleNamespace(status=status, reason="refused"), "refused")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (http_error(discord.NotFound, 404), "The channel <#1> no longer exists."),
        (http_error(discord.Forbidden, 403), "I may not post or attach files in <#1> (missing Send Messages"),
    ],
)
async def test_an_acknowledgement_in_a_channel_gone_or_closed_says_which(error, line):
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise error

    client = SimpleNamespace(get_partial_messageable=lambda channel_id, guild_id=None: SimpleNamespace(send=refuse))
    origin = MessageOrigin(client, channel_id=1, guild_id=2, user_id=3, source_message_id=4)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError) as raised:
        await origin.acknowledge("⏳ Queued.")
    assert str(raised.value).startswith(line)


class Calls:
    """An interaction's response and follow-up webhook that record what the origin asks of Discord."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict[str, Any]]] = []
        self.done = False

    def is_done(self) -> bool:
        return self.done

    async def defer(self, **kwargs: Any) -> Any:
        self.done = True
        self.made.append(("defer", kwargs))
        return SimpleNamespace(message_id=900)

    async def edit_original_response(self, **kwargs: Any) -> Any:
        self.made.append(("edit", kwargs))

    async def send(self, content: str, **kwargs: Any) -> Any:
        self.made.append(("followup", {"content": content, **kwargs}))
        return SimpleNamespace(id=901 + len(self.made))


async def test_more_than_one_job_of_one_interaction_each_get_a_message_of_their_own():
    calls = Calls()
    raw = interaction(None)
    raw.response, raw.followup, raw.client = calls, calls, SimpleNamespace()
    raw.edit_original_response = calls.edit_original_response
    origin = InteractionOrigin(raw)
    origin.expect_more()
    first = await origin.acknowledge("a red car ⏳")
    # The "thinking…" answer is edited at once: the next follow-up can't take its place.
    assert [name for name, _ in calls.made] == ["defer", "edit"] and calls.made[1][1]["content"] == "a red car ⏳"
    assert first.placeholder_id == 900 and first.interaction is raw
    second = await origin.acknowledge("a blue car ⏳")
    name, sent = calls.made[-1]
    assert name == "followup" and sent["content"] == "a blue car ⏳" and sent["wait"] is True
    assert second.placeholder_id == 904 and second.token == "tok" and second.interaction is None
    assert second.placeholder_by_webhook and second.token_expires_at == first.token_expires_at
