"""The loopback Discord's rate limits, DMs and API description, against the small bot and raw HTTP."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import aiohttp
import discord
import pytest

from tests.fakediscord import FakeDiscord, RateLimit
from tests.fakediscord.minibot import MiniBot, png_bytes
from tests.fakediscord.openapi import OpenApiCheck


async def _post(session: aiohttp.ClientSession, fake: FakeDiscord, path: str, body: dict) -> aiohttp.ClientResponse:
    response = await session.post(f"{fake.api_base}{path}", json=body, headers={"Authorization": "Bot fake-token"})
    await response.read()
    return response


async def test_channel_rate_limit_answers_429s_the_way_discord_does(fake: FakeDiscord) -> None:
    fake.channel_rate_limit = RateLimit(count=3, per=1.0)
    general, nsfw = fake.world.general.id, fake.world.nsfw.id
    async with aiohttp.ClientSession() as session:
        replies = [await _post(session, fake, f"/channels/{general}/messages", {"content": f"m{i}"}) for i in range(4)]
        assert [r.status for r in replies] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["2", "1", "0", "0"]
        limited = replies[-1]
        assert limited.headers["Via"] and limited.headers["X-RateLimit-Limit"] == "3"
        assert limited.headers["X-RateLimit-Bucket"] == replies[0].headers["X-RateLimit-Bucket"]
        assert 0 < float(limited.headers["X-RateLimit-Reset-After"]) <= 1.0
        assert int(limited.headers["Retry-After"]) >= 1
        body = await limited.json()
        assert body["global"] is False and 0 < body["retry_after"] <= 1.0
        assert (await _post(session, fake, f"/channels/{nsfw}/messages", {"content": "x"})).status == 200
        await asyncio.sleep(float(limited.headers["X-RateLimit-Reset-After"]) + 0.05)
        assert (await _post(session, fake, f"/channels/{general}/messages", {"content": "later"})).status == 200
    assert len(fake.rate_limited) == 1 and fake.rate_limited[0].rate_limited
    assert [m.content for m in fake.messages(fake.world.general)] == ["m0", "m1", "m2", "later"]


async def test_discord_py_rides_out_the_channel_limit_on_sends_and_edits(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.channel_rate_limit = RateLimit(count=5, per=1.0)
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    started = time.monotonic()
    sent = await asyncio.gather(*(channel.send(f"n{i}") for i in range(8)))
    edited = await asyncio.gather(*(message.edit(content=f"{message.content}!") for message in sent))
    assert time.monotonic() - started >= 1.0  # the sixth create waited for the window to pass
    assert sorted(m.content for m in edited) == sorted(f"n{i}!" for i in range(8))
    assert sorted(m.content for m in fake.messages(fake.world.general)) == sorted(f"n{i}!" for i in range(8))


async def test_results_by_dm_work_end_to_end(fake: FakeDiscord, bot: MiniBot) -> None:
    alice = fake.world.alice
    shy = fake.world.add_user("shy", guild=fake.world.guild, accepts_dms=False)
    user = await bot.fetch_user(int(alice.id))  # GET /users/{id}: not in the cache as a DM recipient
    await user.send("your image", file=discord.File(io.BytesIO(png_bytes((1, 2, 3))), filename="final.png"))
    [dm] = fake.messages(fake.world.dm_channel(alice))
    assert dm.content == "your image" and [a.filename for a in dm.attachments] == ["final.png"]
    assert fake.calls_to("GET", rf"^/users/{alice.id}$") and fake.calls_to("POST", r"^/users/@me/channels$")
    with pytest.raises(discord.Forbidden) as closed:
        await (await bot.fetch_user(int(shy.id))).send("nope")
    assert closed.value.code == 50007


async def test_upload_only_faults_spare_text_only_calls(fake: FakeDiscord, bot: MiniBot) -> None:
    fault = fake.fail_next_upload("POST", r"/channels/\d+/messages$", status=429, retry_after=0.2)
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    await channel.send("text only")
    assert fault.remaining == 1
    await channel.send("with a file", file=discord.File(io.BytesIO(png_bytes((4, 5, 6))), filename="a.png"))
    assert fault.remaining == 0 and [call.files != [] for call in fault.hits] == [True]
    assert [call.status for call in fake.calls_to("POST", r"/messages$")] == [200, 429, 200]


@pytest.mark.skipif(OpenApiCheck.load() is None, reason="no ../shared/discord-openapi.json")
async def test_requests_are_checked_against_discords_api_description(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        await _post(session, fake, f"/channels/{fake.world.general.id}/messages", {"content": 5})
    [error] = fake.take_errors("openapi")
    assert "content" in error.message and "not of type 'string'" in error.message


def test_the_api_description_is_not_copied_into_the_repository() -> None:
    root = Path(__file__).resolve().parent.parent
    assert not [p for p in root.rglob("discord-openapi*.json") if ".venv" not in p.parts]


async def test_an_enforced_nonce_answers_the_message_it_already_made(fake: FakeDiscord) -> None:
    general = fake.world.general.id
    async with aiohttp.ClientSession() as session:
        first = await _post(session, fake, f"/channels/{general}/messages",
                            {"content": "result", "nonce": "job42", "enforce_nonce": True})
        again = await _post(session, fake, f"/channels/{general}/messages",
                            {"content": "result", "nonce": "job42", "enforce_nonce": True})
        loose = await _post(session, fake, f"/channels/{general}/messages", {"content": "result", "nonce": "job42"})
        assert (await first.json())["id"] == (await again.json())["id"] != (await loose.json())["id"]
    assert [m.content for m in fake.messages(fake.world.general)] == ["result", "result"]
