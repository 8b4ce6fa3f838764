"""Uploads at Discord's size: a 10 MiB photo through /imagine's image option (the path /edit and image channels
share: cogs.attachments.read_image) is taken, shrunk to 2048 px and stored; one byte more is refused, in /imagine to
the member alone, in an image channel as a reply, saying why."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from core.attachments import MAX_BYTES
from core.inputs import InputStore
from tests.cogs.test_addons import image_channel
from tests.fakediscord import Upload
from tests.images import photo_array


@pytest.fixture(scope="module")
def ten_mib_photo() -> bytes:
    """A 3072 px photo-like JPEG of exactly 10 MiB: 9.9995 MiB of picture, then bytes after its end marker, as
    phones append a motion clip (decoders stop at the marker)."""
    buf = io.BytesIO()
    Image.fromarray(photo_array(3072, noise=30)).save(buf, format="JPEG", quality=98)
    picture = buf.getvalue()
    assert 9.9 * 2**20 < len(picture) <= MAX_BYTES
    return picture + b"\0" * (MAX_BYTES - len(picture))


async def test_a_10_mib_photo_is_taken_shrunk_to_2048_px_and_stored(loopback, ten_mib_photo):
    env = loopback
    upload = Upload("photo.jpg", ten_mib_photo, content_type="image/jpeg")
    assert len(upload.data) == MAX_BYTES
    interaction = await env.fake.slash("imagine", {"prompt": "a lighthouse", "image": upload, "strength": 0.6})
    result = await env.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None,
        what="the drafts", timeout=30,
    )
    job = await env.job_of(result)
    assert isinstance(job.params.init_image, str)
    stored = InputStore.beside(Path(env.store.path)).get_sync(job.params.init_image)
    with Image.open(io.BytesIO(stored)) as img:
        assert img.format == "JPEG" and img.size == (2048, 2048)  # lossy, small, no metadata (#21)
    assert env.engine.item(job.id).request.init.data == stored


async def test_one_byte_over_10_mib_is_refused_to_the_member_alone(loopback, ten_mib_photo):
    env = loopback
    env.fake.attachment_size_limit = 500 * 2**20  # a member with Nitro may send this much
    upload = Upload("photo.jpg", ten_mib_photo + b"\0", content_type="image/jpeg")
    interaction = await env.fake.slash("imagine", {"prompt": "a lighthouse", "image": upload})
    [refusal] = await interaction.wait_messages(lambda messages: len(messages) == 1)
    assert refusal.ephemeral and not refusal.attachments
    # rounded up: "10.0 MiB; the limit is 10 MiB" would read as within it
    assert "“photo.jpg” is 10.1 MiB; the limit is 10 MiB." in refusal.content

    channel = await image_channel(env)  # an image channel reads its attachments the same way
    prompt = await env.fake.say(channel, "a lighthouse", attachments=[upload])
    answer = await env.fake.wait_for_message(lambda m: m.reply_to == prompt.id)
    assert "“photo.jpg” is 10.1 MiB; the limit is 10 MiB." in answer.content and not answer.attachments
    assert env.engine.submitted == []
