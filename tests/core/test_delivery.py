"""Delivery: files over the upload limit of where they go are shrunk, not refused; every Discord call
is bounded in time, never cancelled, and a result that cannot go one way goes the next."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord.webhook.async_ import AsyncDeferredLock
from PIL import Image

from core.delivery import DEFAULT_UPLOAD_LIMIT, Delivery, DeliveryError, fit_files


def noisy_png(side: int = 256) -> bytes:
    """A PNG that compresses badly (random pixels): big as PNG, much smaller as WebP or JPEG."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


class Channel:
    def __init__(self) -> None:
        self.sent: list[list[tuple[str, bytes]]] = []

    async def send(self, content: str, *, files: list[discord.File], **kwargs: Any) -> Any:
        self.sent.append([(f.filename, f.fp.read()) for f in files])
        return SimpleNamespace(id=1, jump_url="https://discord.com/channels/2/1/1")


class Client:
    application_id = None

    def __init__(self, guild_limit: int | None) -> None:
        self.channel = Channel()
        self.guild_limit = guild_limit

    def get_partial_messageable(self, channel_id: int, guild_id: int | None = None) -> Channel:
        return self.channel

    def get_guild(self, guild_id: int) -> Any:
        return None if self.guild_limit is None else SimpleNamespace(filesize_limit=self.guild_limit)


class Interaction:
    token = "token"

    def __init__(self, limit: int) -> None:
        self.filesize_limit = limit
        self.edits: list[list[tuple[str, bytes]]] = []

    async def edit_original_response(self, *, attachments: list[discord.File], **kwargs: Any) -> Any:
        self.edits.append([(f.filename, f.fp.read()) for f in attachments])
        return discord.Object(id=2)


def decoded_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


async def test_a_file_over_the_interaction_limit_is_shrunk():
    big = noisy_png()
    small = b"\x89PNG tiny"
    limit = len(big) // 2
    interaction = Interaction(limit)
    delivery = Delivery(
        Client(guild_limit=None),  # type: ignore[arg-type]
        channel_id=1,
        guild_id=2,
        interaction=interaction,  # type: ignore[arg-type]
        token_expires_at=None,
    )
    await delivery.post("done", [("final.png", big), ("note.png", small)], None)
    (sent,) = interaction.edits
    (name, data), second = sent
    assert name.rsplit(".", 1)[1] in ("webp", "jpg") and len(data) <= limit
    assert decoded_size(data) == (256, 256)
    assert second == ("note.png", small)  # files within the limit go as they are


async def test_channel_posts_use_the_guild_limit_and_default_to_10_mib():
    big = noisy_png()
    client = Client(guild_limit=len(big) // 2)
    delivery = Delivery(client, channel_id=1, guild_id=2)  # type: ignore[arg-type]
    assert delivery.upload_limit(webhook=False) == len(big) // 2
    await delivery.post("done", [("draft_1.png", big)], None)
    ((name, data),) = client.channel.sent[0]
    assert name.startswith("draft_1.") and not name.endswith(".png") and len(data) <= len(big) // 2
    assert Delivery(Client(guild_limit=None), channel_id=1, guild_id=None).upload_limit(webhook=False) == (  # type: ignore[arg-type]
        DEFAULT_UPLOAD_LIMIT
    )
    assert DEFAULT_UPLOAD_LIMIT == 10 * 1024 * 1024


async def test_a_file_that_cannot_fit_fails_the_post_clearly():
    with pytest.raises(DeliveryError, match="too large to upload"):
        await fit_files([("final.png", noisy_png())], 100)


async def test_a_channel_post_carries_the_nonce_so_a_repeat_is_dropped_by_discord():
    class NonceChannel(Channel):
        def __init__(self) -> None:
            super().__init__()
            self.nonces: list[object] = []

        async def send(self, content: str, *, files: list[discord.File], **kwargs: Any) -> Any:
            self.nonces.append(kwargs.get("nonce"))
            return await super().send(content, files=files, **kwargs)

    channel = NonceChannel()
    client = SimpleNamespace(
        get_partial_messageable=lambda channel_id, guild_id=None: channel, get_guild=lambda gid: None,
        application_id=None,
    )
    delivery = Delivery(client, channel_id=5, guild_id=None)  # type: ignore[arg-type]
    await delivery.post("done", [("final.png", b"png")], None, nonce="r42")
    assert channel.nonces == ["r42"]


# ----------------------------------------------------------------- bounded calls (#12)

FILES = [("draft_1.png", b"png")]


class SlowInteraction:
    """An interaction whose message edits go through discord.py's own webhook lock (``AsyncDeferredLock``).

    ``hold`` seconds after an edit the lock is still held: Discord said the bucket is empty
    (``X-RateLimit-Remaining: 0``) and the adapter sleeps in the lock's exit before releasing it; a
    task cancelled in that sleep never releases it. ``hang`` makes the next edit never answer.
    """

    token = "token"
    filesize_limit = DEFAULT_UPLOAD_LIMIT

    def __init__(self, *, hold: float = 0.0, hang: bool = False, answer_after: float = 0.0) -> None:
        self.lock = asyncio.Lock()
        self.hold, self.hang, self.answer_after = hold, hang, answer_after
        self.edits: list[dict[str, Any]] = []
        self.cancelled = 0

    async def edit_original_response(self, **fields: Any) -> Any:
        async with AsyncDeferredLock(self.lock) as lock:
            try:
                if self.hang:
                    await asyncio.Event().wait()
                await asyncio.sleep(self.answer_after)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            self.answer_after = 0.0
            self.edits.append(fields)
            hold, self.hold = self.hold, 0.0
            if hold:
                lock.delay_by(hold)
            return SimpleNamespace(id=2, jump_url="https://discord.com/channels/2/1/2")


def live_delivery(interaction: SlowInteraction, client: Any = None, *, call_timeout: float) -> Delivery:
    return Delivery(
        client if client is not None else Client(None),
        channel_id=1,
        guild_id=2,
        interaction=interaction,  # type: ignore[arg-type]
        token_expires_at=time.time() + 900,
        placeholder_id=2,
        placeholder_by_webhook=True,
        call_timeout=call_timeout,
    )


async def test_a_result_edit_that_never_returns_goes_to_the_channel_within_the_bound():
    client, interaction = Client(None), SlowInteraction(hang=True)
    delivery = live_delivery(interaction, client, call_timeout=0.2)
    began = time.monotonic()
    message = await asyncio.wait_for(delivery.post("done", FILES, None, nonce="r1"), 2.0)
    assert time.monotonic() - began < 1.0
    assert message.id == 1 and client.channel.sent == [FILES]  # the job's images arrived, in the channel
    assert interaction.cancelled == 0  # the edit was left alone, not cancelled inside the webhook lock


async def test_a_status_edit_sleeping_on_a_429_leaves_the_result_a_way_out_and_the_lock_free():
    """The task dump of #12: the updater closes while its edit holds the webhook lock on a 429."""
    from core.status import StatusUpdater

    client, interaction = Client(None), SlowInteraction(hold=1.0)
    delivery = live_delivery(interaction, client, call_timeout=0.2)
    updater = StatusUpdater(delivery.show, interval=0.01)
    updater.set("⏳ Queued: position 7")
    for _ in range(100):
        if interaction.edits:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(updater.close(timeout=0.05), 1.0)
    began = time.monotonic()
    await asyncio.wait_for(delivery.post("done", FILES, None, nonce="r7"), 2.0)
    assert time.monotonic() - began < 1.0 and client.channel.sent == [FILES]  # not stuck behind the lock
    for _ in range(300):  # the 429's sleep ends and discord.py releases the lock
        if not interaction.lock.locked():
            break
        await asyncio.sleep(0.01)
    assert await asyncio.wait_for(delivery.show("later"), 1.0)  # then edits go again
    contents = [edit["content"] for edit in interaction.edits]
    assert contents[0] == "⏳ Queued: position 7" and contents[-1] == "later"
    assert "Posted here instead: https://discord.com/channels/2/1/1" in contents  # the stale status points on
    assert interaction.cancelled == 0


async def test_a_cancelled_post_never_leaves_the_interactions_lock_held():
    """A job task cancelled (shutdown) while its result edit is in the lock's exit: later edits still go."""
    interaction = SlowInteraction(hold=0.3)
    delivery = live_delivery(interaction, call_timeout=5.0)
    post = asyncio.create_task(delivery.post("done", FILES, None, nonce="r3"))
    for _ in range(100):
        if interaction.edits:
            break
        await asyncio.sleep(0.01)
    post.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await post
    assert await asyncio.wait_for(delivery.show("✖️ Cancelled."), 2.0)
    assert not interaction.lock.locked()


async def test_a_result_edit_that_lands_late_becomes_a_link_to_the_channels_copy():
    client, interaction = Client(None), SlowInteraction(answer_after=0.4)
    delivery = live_delivery(interaction, client, call_timeout=0.1)
    message = await asyncio.wait_for(delivery.post("done", FILES, None, nonce="r4"), 2.0)
    assert client.channel.sent == [FILES]
    for _ in range(200):
        if len(interaction.edits) == 2:
            break
        await asyncio.sleep(0.01)
    late, pointer = interaction.edits
    assert [f.filename for f in late["attachments"]] == ["draft_1.png"]
    assert pointer["content"] == f"Posted here instead: {message.jump_url}"
    assert pointer["attachments"] == [] and pointer["view"] is None  # one copy of the images, one set of buttons


class UnansweredChannel(Channel):
    """A channel whose first ``hangs`` posts never answer."""

    def __init__(self, hangs: int) -> None:
        super().__init__()
        self.hangs = hangs
        self.nonces: list[object] = []

    async def send(self, content: str, *, files: list[discord.File], **kwargs: Any) -> Any:
        self.nonces.append(kwargs.get("nonce"))
        if self.hangs:
            self.hangs -= 1
            await asyncio.Event().wait()
        return await super().send(content, files=files, **kwargs)


def channel_delivery(channel: Channel, *, call_timeout: float) -> Delivery:
    client = Client(None)
    client.channel = channel
    return Delivery(client, channel_id=5, guild_id=None, call_timeout=call_timeout)  # type: ignore[arg-type]


class DeletedChannel(Channel):
    async def send(self, content: str, *, files: list[discord.File], **kwargs: Any) -> Any:
        raise discord.NotFound(SimpleNamespace(status=404, reason="Not Found"), "Unknown Channel")  # type: ignore[arg-type]


async def test_a_post_in_a_deleted_channel_fails_with_a_sentence_for_the_user():
    with pytest.raises(DeliveryError, match=r"^The channel <#5> no longer exists\.$"):
        await channel_delivery(DeletedChannel(), call_timeout=1.0).post("done", FILES, None, nonce="r4")


async def test_a_channel_post_without_an_answer_is_tried_again_with_the_same_nonce():
    channel = UnansweredChannel(hangs=1)
    delivery = channel_delivery(channel, call_timeout=0.2)
    message = await asyncio.wait_for(delivery.post("done", FILES, None, nonce="r5"), 2)
    assert message.id == 1 and channel.nonces == ["r5", "r5"]  # should both land, Discord drops the repeat


async def test_a_channel_that_never_answers_ends_in_a_clear_error_within_the_bound():
    channel = UnansweredChannel(hangs=2)
    began = time.monotonic()
    with pytest.raises(DeliveryError, match="did not take the images in time"):
        await asyncio.wait_for(channel_delivery(channel, call_timeout=0.2).post("done", FILES, None, nonce="r6"), 2)
    assert time.monotonic() - began < 1.0 and channel.nonces == ["r6", "r6"]


class LateChannel(Channel):
    """A channel that takes every post, but answers only ``late`` seconds later (Discord slow, not down)."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    async def send(self, content: str, *, files: list[discord.File], **kwargs: Any) -> Any:
        await asyncio.sleep(self.late)
        return await super().send(content, files=files, **kwargs)


async def test_a_channel_post_answered_past_its_bound_is_handed_over_to_be_recorded_when_it_lands():
    channel = LateChannel(late=0.5)
    with pytest.raises(DeliveryError, match="did not take the images in time") as caught:
        await asyncio.wait_for(channel_delivery(channel, call_timeout=0.1).post("done", FILES, None, nonce="r8"), 2)
    assert len(caught.value.late_posts) == 2  # both attempts (same nonce: Discord keeps one message)
    landed = await asyncio.wait_for(asyncio.gather(*caught.value.late_posts), 2)
    assert [m.id for m in landed] == [1, 1] and len(channel.sent) == 2


async def test_a_note_or_reaction_that_never_answers_does_not_hold_the_job():
    never = asyncio.Event()

    async def hang(*args: Any, **kwargs: Any) -> None:
        await never.wait()

    interaction = SlowInteraction()
    interaction.followup = SimpleNamespace(send=hang)  # type: ignore[attr-defined]
    client = Client(None)
    client.channel.get_partial_message = lambda message_id: SimpleNamespace(add_reaction=hang)  # type: ignore[attr-defined]
    delivery = live_delivery(interaction, client, call_timeout=0.1)
    assert await asyncio.wait_for(delivery.tell("Job #1 is done, but I could not post it"), 1.0) is False
    await asyncio.wait_for(delivery.react(1, "🔁"), 1.0)
