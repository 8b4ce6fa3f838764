"""After the result: four PNGs with controls, 🔁, the row, a post that fails, the DM copy."""

from __future__ import annotations

import asyncio

import discord

from core.delivery import DeliveryError
from tests.core.doubles import RecordingOrigin, eventually
from tests.core.jobs.support import wait_status


async def test_drafts_are_delivered_as_four_pngs_with_controls(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="**bold** @everyone", seed=7, aspect="16:9")
    engine.finish(job.id)
    delivery = origin.deliveries[0]
    await eventually(lambda: delivery.posts)
    content, files, view = delivery.posts[0]
    assert [name for name, _ in files] == ["draft_1.png", "draft_2.png", "draft_3.png", "draft_4.png"]
    assert all(data.startswith(b"\x89PNG") for _, data in files)
    assert "@\u200beveryone" in content and "\\*\\*bold\\*\\*" in content and "`7`" in content
    ids = [item.custom_id for item in view.children]
    assert ids == [f"job:{job.id}:{a}" for a in ("u1", "u2", "u3", "u4", "v1", "v2", "v3", "v4", "reroll", "remix")]
    done = await wait_status(store, job.id, "done")
    assert done.seeds == (7, 8, 9, 10)
    assert done.timings["run"] == 0.2 and "deliver" in done.timings
    assert done.result_message_id is not None and done.result_message_id != delivery.placeholder_id
    # 🔁 comes after the row says done (the row first: a restart then knows the result is posted).
    assert await eventually(lambda: delivery.reactions) == [(done.result_message_id, "🔁")]
    assert (done.width, done.height) == (704, 384)


async def test_result_that_cannot_be_posted_is_still_recorded(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x", seed=5)
    origin.deliveries[0].post_error = DeliveryError("The channel <#100> no longer exists.")
    engine.finish(job.id)
    row = await wait_status(store, job.id, "done")
    assert row.seeds == (5, 6, 7, 8)
    await eventually(lambda: origin.deliveries[0].told)
    assert "could not post it" in origin.deliveries[0].told[0]


async def test_results_come_by_dm_too_when_the_author_asked(service, store, engine, dms):
    await service.prefs.update(1, dm_results=True)
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=7)
    quiet = await service.imagine(RecordingOrigin(user_id=2), prompt="a cat", seed=7)
    engine.finish(job.id)
    engine.finish(quiet.id)
    await eventually(lambda: dms.sent)
    done = await eventually(lambda: origin.deliveries[0].posts)
    user_id, content, files = dms.sent[0]
    assert user_id == 1 and [name for name, _ in files] == [name for name, _ in done[0][1]]
    assert "a red fox" in content and "`7`" in content and "Steps: 1" in content
    assert "https://discord.com/channels/10/100/" in content
    await eventually(lambda: service.active() == {})
    assert len(dms.sent) == 1  # user 2 did not ask


async def test_closed_dms_do_not_disturb_the_delivery(service, store, engine, dms):
    await service.prefs.update(1, dm_results=True)
    dms.open = False
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=7)
    engine.finish(job.id)
    await eventually(lambda: origin.deliveries[0].posts)
    await wait_status(store, job.id, "done")  # the row is marked done after the post, then the DM is tried
    await eventually(lambda: service.active() == {})
    assert dms.sent == []


async def final_that_could_not_be_posted(service, store, engine, origin):
    await store.update_guild_settings(10, finals_outside_nsfw=True)
    service.guilds.forget()
    job = await service.final(origin, prompt="a lighthouse", seed=3)
    origin.deliveries[0].post_error = DeliveryError("The channel <#100> no longer exists.")
    result = engine.finish(job.id)
    row = await wait_status(store, job.id, "done")
    return row, result


async def test_a_final_that_could_not_be_posted_is_posted_by_show_from_its_kept_image(service, store, engine, inputs):
    origin = RecordingOrigin()
    row, result = await final_that_could_not_be_posted(service, store, engine, origin)
    assert row.result_message_id is None  # nothing was posted: the "⏳ Queued" placeholder is not the result
    told = await eventually(lambda: origin.deliveries[0].told)
    assert "could not post it" in told[0] and f"/show {row.id}" in told[0]
    assert inputs.result_sync(row.id) == result.images[0].png  # kept before the post
    submitted = len(engine.submitted)

    again = RecordingOrigin()
    assert await service.repost(again, row.id) is not None and again.refusals == []
    assert len(engine.submitted) == submitted  # no new run
    (content, files, view), = again.deliveries[0].posts
    assert files == [("final.png", result.images[0].png)] and "a lighthouse" in content
    assert f"job:{row.id}:vary_subtle" in [item.custom_id for item in view.children]
    shown = await store.get_job(row.id)
    assert shown.status == "done" and shown.result_message_id is not None
    assert await store.job_by_message(shown.result_message_id) == shown  # its buttons find the job
    assert again.deliveries[0].reactions == [(shown.result_message_id, "🔁")]

    later = RecordingOrigin()  # posted now: /show makes it again as for any other job
    assert await service.repost(later, row.id) is not None
    assert len(engine.submitted) == submitted + 1


async def test_drafts_that_could_not_be_posted_come_again_with_the_same_seeds_through_show(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x", seed=5)
    origin.deliveries[0].post_error = DeliveryError("The channel <#100> no longer exists.")
    engine.finish(job.id)
    await wait_status(store, job.id, "done")
    told = await eventually(lambda: origin.deliveries[0].told)
    assert f"/show {job.id}" in told[0] and "same seeds" in told[0]
    again = await service.repost(RecordingOrigin(), job.id)
    assert engine.item(again.id).request.seeds == (5, 6, 7, 8)


async def test_an_author_without_a_live_interaction_is_told_by_dm_how_to_get_the_result(service, store, engine, dms):
    class Expired(RecordingOrigin):
        async def acknowledge(self, content):
            delivery = await super().acknowledge(content)

            async def cannot_tell(text):
                return False

            delivery.tell = cannot_tell
            return delivery

    origin = Expired()
    row, _ = await final_that_could_not_be_posted(service, store, engine, origin)
    (user_id, text, files), = await eventually(lambda: dms.sent)
    assert user_id == 1 and files == [] and f"/show {row.id}" in text and "kept" in text


async def test_a_result_whose_post_landed_after_its_bound_is_recorded_and_not_posted_again_by_show(
    service, store, engine, inputs
):
    origin = RecordingOrigin()
    await store.update_guild_settings(10, finals_outside_nsfw=True)
    service.guilds.forget()
    job = await service.final(origin, prompt="a lighthouse", seed=3)
    late = asyncio.get_running_loop().create_future()
    error = DeliveryError("Discord did not take the images in time (10 s).")
    error.late_posts = (late,)  # Discord had the POST; only its answer was late
    origin.deliveries[0].post_error = error
    engine.finish(job.id)
    row = await wait_status(store, job.id, "done")
    assert row.result_message_id is None  # nothing posted, as far as anyone knows yet
    late.set_result(discord.Object(id=424242))  # then Discord's answer: it is in the channel
    for _ in range(200):
        if (row := await store.get_job(job.id)).result_message_id is not None:
            break
        await asyncio.sleep(0.01)
    assert row.result_message_id == 424242 and row.status == "done"

    again = RecordingOrigin()
    await service.repost(again, row.id)
    assert all(not d.posts for d in again.deliveries)  # the kept image is not posted a second time
