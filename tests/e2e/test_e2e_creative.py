"""Creative controls end to end: /imagine from an image, /edit with a mask or a region, Zoom out, Pan and
Vary (subtle) on a final, and the refusal of an attachment that is no image."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image, ImageChops, ImageStat

from core import canvas
from tests.e2e.support import RunningBot, new_user, refusal_of, result_of
from tests.fakediscord import StoredMessage, Upload
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def picture(width: int, height: int) -> Image.Image:
    """A smooth gradient: it survives resizing, so pixels kept by an edit can be compared."""
    x = Image.linear_gradient("L").resize((width, height))
    y = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((width, height))
    return Image.merge("RGB", (x, y, Image.new("L", (width, height), 90)))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


@dataclass
class Final:
    message: StoredMessage
    job: dict[str, Any]
    png: bytes


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def final(module_bot: RunningBot) -> Final:
    """One /final whose buttons the tests below press."""
    author = new_user(module_bot.fake, "finalist")
    interaction = await module_bot.fake.slash("final", {"prompt": "a harbour at noon", "seed": 11}, user=author)
    message = await result_of(interaction, files=1)
    job = await module_bot.finished_job_for(message)
    assert job["status"] == "done" and job["kind"] == "final"
    return Final(message, job, message.attachments[0].data)


async def test_imagine_with_an_image_starts_four_drafts_from_it(bot: RunningBot) -> None:
    user = new_user(bot.fake, "painter")
    upload = Upload("photo.png", png(picture(800, 600)), content_type="image/png")
    interaction = await bot.fake.slash("imagine", {"prompt": "as a watercolour", "image": upload}, user=user)
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    drafts = await result_of(interaction, files=4)
    assert [image.size for image in drafts.images()] == [(576, 448)] * 4  # the photo's 4:3 at the draft size
    job = await bot.finished_job_for(drafts)
    assert (job["status"], job["kind"], job["mode"]) == ("done", "draft", "img2img")
    assert job["params"]["init_image"] and job["strength"] == pytest.approx(0.6)


async def test_edit_with_a_mask_keeps_the_unmasked_pixels(bot: RunningBot) -> None:
    user = new_user(bot.fake, "retoucher")
    source = picture(512, 512)
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (256, 0, 512, 512))  # repaint the right half
    options = {
        "image": Upload("room.png", png(source), content_type="image/png"),
        "mask": Upload("mask.png", png(mask), content_type="image/png"),
        "prompt": "a red sofa",
        "seed": 3,
    }
    interaction = await bot.fake.slash("edit", options, user=user)
    result = await result_of(interaction, files=1)
    [image] = result.images()
    assert image.size == (1024, 1024)
    expected = source.resize(image.size, Image.Resampling.LANCZOS)
    kept = (0, 0, 448, 1024)  # the left half, short of the feathered seam
    assert mean_difference(image.crop(kept), expected.crop(kept)) < 6
    job = await bot.finished_job_for(result)
    assert (job["status"], job["kind"], job["mode"]) == ("done", "final", "inpaint")
    assert job["params"]["init_image"] and job["params"]["mask_image"]


async def test_edit_with_a_region(bot: RunningBot) -> None:
    user = new_user(bot.fake, "regionist")
    source = picture(640, 480)
    options = {
        "image": Upload("street.png", png(source), content_type="image/png"),
        "prompt": "a blue door",
        "left": 50,
        "top": 0,
        "width": 50,
        "height": 100,
        "seed": 4,
    }
    interaction = await bot.fake.slash("edit", options, user=user)
    result = await result_of(interaction, files=1)
    [image] = result.images()
    assert image.size == canvas.edit_size(640, 480)
    expected = source.resize(image.size, Image.Resampling.LANCZOS)
    kept = (0, 0, image.width * 2 // 5, image.height)
    assert mean_difference(image.crop(kept), expected.crop(kept)) < 6
    job = await bot.finished_job_for(result)
    assert (job["mode"], job["params"]["region"]) == ("inpaint", [50, 0, 50, 100])


@pytest.mark.parametrize(("action", "how"), [("zoom2", {"zoom": 2.0}), ("pan_right", {"pan": "right"})])
async def test_zoom_and_pan_buttons_make_new_finals(bot: RunningBot, final: Final, action: str, how: dict) -> None:
    user = new_user(bot.fake, f"outpainter_{action}")
    click = await bot.fake.click(final.message, f"job:{final.job['id']}:{action}", user)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    result = await result_of(click, files=1)
    [image] = result.images()
    expected = canvas.outpaint(final.png, budget=1024 * 1024, **how)
    assert image.size == (expected.width, expected.height)
    if action == "pan_right":
        assert image.width > image.height
    job = await bot.finished_job_for(result)
    assert (job["status"], job["kind"], job["mode"]) == ("done", "final", "outpaint")
    assert job["parent_id"] == final.job["id"] and job["params"]["outpaint"] == action
    assert f"job:{job['id']}:zoom2" in result.custom_ids()  # the new final has its own controls


async def test_vary_subtle_makes_a_new_final(bot: RunningBot, final: Final) -> None:
    user = new_user(bot.fake, "varier")
    assert f"job:{final.job['id']}:vary_subtle" in final.message.custom_ids()
    click = await bot.fake.click(final.message, f"job:{final.job['id']}:vary_subtle", user)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    result = await result_of(click, files=1)
    [image] = result.images()
    assert image.size == (final.job["width"], final.job["height"])
    job = await bot.finished_job_for(result)
    assert (job["status"], job["kind"], job["mode"]) == ("done", "final", "vary")
    assert job["parent_id"] == final.job["id"] and job["params"]["vary"] == "subtle"
    # It starts from the final's kept image, which the row names: no second copy in data/inputs/.
    assert job["params"]["init_result"] == final.job["id"] and "init_image" not in job["params"]
    assert job["strength"] == pytest.approx(0.35) and job["seed"] != final.job["seed"]
    assert job["prompt"] == final.job["prompt"] and job["model"] == final.job["model"]


async def test_an_attachment_that_is_no_image_is_refused(bot: RunningBot) -> None:
    user = new_user(bot.fake, "texter")
    jobs_before = len(bot.jobs())
    upload = Upload("notes.txt", b"not an image at all", content_type="text/plain")
    interaction = await bot.fake.slash("imagine", {"prompt": "a cat", "image": upload}, user=user)
    refusal = await refusal_of(interaction)
    assert "not an image" in refusal.content
    disguised = Upload("cat.png", b"GIF89a but not really", content_type="image/png")
    interaction = await bot.fake.slash("edit", {"image": disguised, "prompt": "x", "mask": disguised}, user=user)
    await refusal_of(interaction)
    assert len(bot.jobs()) == jobs_before


def phone_photo(width: int, height: int) -> bytes:
    """A large JPEG like a phone's: gradients under noise, so it is megabytes, not kilobytes."""
    noise = Image.effect_noise((width, height), 20)
    x = Image.linear_gradient("L").resize((width, height))
    y = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((width, height))
    photo = Image.merge("RGB", (ImageChops.add(x, noise, 2.0), ImageChops.add(y, noise, 2.0), noise))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=70)  # about 2 and 7 MB
    return buffer.getvalue()


@pytest.mark.parametrize(("width", "height"), [(4032, 3024), (8000, 5000)])
async def test_big_photos_are_answered_at_once_then_drafted_or_refused(bot: RunningBot, width: int, height: int):
    """Discord expires an interaction not answered within 3 s: the upload is fetched and checked after the answer."""
    user = new_user(bot.fake, f"photographer{width}")
    data = phone_photo(width, height)
    assert len(data) > 2_000_000
    for command, options in (
        ("imagine", {"prompt": "as a watercolour"}),
        ("edit", {"prompt": "a red hat", "left": 10, "top": 10, "width": 30, "height": 30}),
    ):
        upload = Upload("photo.jpg", data, content_type="image/jpeg")
        interaction = await bot.fake.slash(command, {**options, "image": upload}, user=user)
        assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
        assert interaction.callback_delay is not None and interaction.callback_delay < 1.0, interaction.callback_delay
        result = await result_of(interaction, files=4 if command == "imagine" else 1)
        job = await bot.finished_job_for(result)
        assert job["status"] == "done"
        assert max(job["width"], job["height"]) <= 2048
