"""Faults end to end: the gateway drops mid-job, Discord rate-limits the upload, the interaction token expires.

Whatever goes wrong on the way, the user still gets exactly one result."""

from __future__ import annotations

import pytest

from tests.e2e.support import RunningBot, bot_message_ids, new_user, result_of
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ORIGINAL_EDIT = r"^/webhooks/\d+/[^/]+/messages/@original$"


async def test_gateway_drop_mid_job_resumes_and_the_result_arrives(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "dropped")
    identifies = len(fake.gateway.identifies)
    resumes = sum(1 for resume in fake.gateway.resumes if resume.ok)

    interaction = await fake.slash("imagine", {"prompt": "a bridge in the fog", "seed": 5}, user=user)
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    await fake.drop_gateway(code=4000)  # the job is accepted, its drafts are still to come
    assert not any(message.attachments for message in interaction.messages()), "the result came before the drop"
    await fake.wait_for(
        lambda: fake.gateway.connected and sum(1 for resume in fake.gateway.resumes if resume.ok) > resumes,
        30,
        "the bot to RESUME",
    )
    assert len(fake.gateway.identifies) == identifies, "the bot identified again instead of resuming"

    message = await result_of(interaction, files=4)
    assert all(image.size == (512, 512) for image in message.images())
    job = await bot.finished_job_for(message)
    assert job["status"] == "done" and job["seeds"] == [5, 6, 7, 8]

    # Events flow again on the resumed session: a slash command right after is answered.
    after = await fake.slash("imagine", {"prompt": "after the storm"}, user=user)
    assert await after.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    await result_of(after, files=4)


async def test_rate_limited_upload_waits_retry_after_and_succeeds(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "limited")
    fault = fake.fail_next_upload("PATCH", ORIGINAL_EDIT, status=429, retry_after=1.0)

    interaction = await fake.slash("imagine", {"prompt": "a slow river", "seed": 31}, user=user)
    message = await result_of(interaction, files=4)
    assert len(message.images()) == 4

    uploads = [call for call in fake.calls_to("PATCH", ORIGINAL_EDIT)
               if call.files and interaction.token in call.path]
    assert len(uploads) == 2, uploads
    limited, retried = uploads
    assert limited.status == 429 and limited.fault and fault.remaining == 0
    assert retried.status == 200 and not retried.fault
    assert retried.at - limited.at >= 1.0, f"retried after {retried.at - limited.at:.2f}s, before Retry-After"
    assert retried.files == limited.files, "the retry uploaded other bytes"
    job = await bot.finished_job_for(message)
    assert job["status"] == "done" and job["seeds"] == [31, 32, 33, 34]


async def test_expired_token_posts_the_result_in_the_channel(bot: RunningBot) -> None:
    fake = bot.fake
    user = new_user(fake, "late")
    interaction = await fake.slash("imagine", {"prompt": "a letter that arrives late", "seed": 64}, user=user)
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    before = bot_message_ids(fake)
    fake.expire_token(interaction)

    posted = await fake.wait_for(
        lambda: next((message for message in fake.bot_messages(fake.world.general)
                      if message.id not in before and len(message.attachments) == 4), None),
        60,
        "the drafts in the channel",
    )
    assert posted.webhook_id is None and not posted.ephemeral, "not a channel message"
    assert "a letter that arrives late" in posted.content
    assert all(image.size == (512, 512) for image in posted.images())
    assert not any(message.attachments for message in interaction.messages()), "also delivered by webhook?"
    job = await bot.finished_job_for(posted)
    assert job["status"] == "done" and job["seeds"] == [64, 65, 66, 67]
    assert job["result_message_id"] == int(posted.id) and job["user_id"] == int(user.id)

    # Its controls work: they find the job through the new message.
    click = await fake.click(posted, f"job:{job['id']}:v1", user)
    variations = await result_of(click, files=4)
    variation = await bot.finished_job_for(variations)
    assert (variation["parent_id"], variation["parent_index"]) == (job["id"], 0)
