"""Delivery.post: files over the upload limit of where they go are shrunk, not refused."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace
from typing import Any

import discord
import pytest
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
        return discord.Object(id=1)


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


def test_the_channel_pacer_holds_status_edits_while_the_channel_is_full():
    from core.delivery import ChannelPacer

    now = [100.0]
    pacer = ChannelPacer(count=4, per=5.0, clock=lambda: now[0])
    assert [pacer.status_gate(7) for _ in range(4)] == [0.0] * 4
    assert pacer.status_gate(7) == 5.0 and pacer.delay(7) == 5.0
    assert pacer.delay(8) == 0.0  # other channels are free
    assert pacer.status_gate(7, crowded=False) == 0.0  # a job alone in its channel is spaced by its own interval
    now[0] += 5.0
    assert pacer.status_gate(7) == 0.0


async def test_a_waiting_result_goes_before_status_edits():
    import asyncio

    from core.delivery import ChannelPacer

    pacer = ChannelPacer(count=2, per=0.3)
    pacer.take(7)
    pacer.take(7)
    result = asyncio.create_task(pacer.turn(7, timeout=5.0))
    await asyncio.sleep(0.05)
    assert pacer.status_gate(7) > 0  # held back for the result, though a slot is about to free
    await asyncio.wait_for(result, 2.0)
    assert pacer.status_gate(7) == 0.0


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
