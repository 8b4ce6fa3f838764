"""The bot's cogs and job service through real discord.py, against the loopback Discord, in this process.

The engine is the door-following double (no torch) that works through its queue by itself;
everything Discord-side is real: defers, multipart uploads, webhook edits, channel messages, reactions,
dynamic buttons, a restart with the interaction token still valid (the harness: tests/cogs/support.py).
The subprocess end-to-end tests (``tests/e2e``) run ``python bot.py`` with the real engine.
"""

from __future__ import annotations

import asyncio

from tests.cogs.support import FLAG_EPHEMERAL, imagine
from tests.fakediscord import Upload
from tests.images import test_image


async def test_imagine_posts_four_drafts_with_controls_and_a_reroll_reaction(loopback):
    fake = loopback.fake
    message = await imagine(loopback, "a fox @everyone **bold**", seed=11)
    assert [a.filename for a in message.attachments] == [f"draft_{i}.png" for i in range(1, 5)]
    assert all(image.format == "PNG" for image in message.images())
    assert not message.mention_everyone and message.mention_ids == []
    assert "`11`" in message.content and "\\*\\*bold\\*\\*" in message.content
    job = await loopback.job_of(message)
    assert job is not None and job.status == "done" and job.seeds == (11, 12, 13, 14)
    assert message.custom_ids() == [
        f"job:{job.id}:{a}" for a in ("u1", "u2", "u3", "u4", "v1", "v2", "v3", "v4", "reroll", "remix")
    ]
    await fake.wait_for(lambda: fake.world.bot.id in message.reactions.get("🔁", []), what="the bot's 🔁")
    assert any("Queued" in snapshot.content for snapshot in message.history)  # the queue state came first


async def test_bad_input_gets_an_ephemeral_answer_and_nothing_is_stored(loopback):
    for options, expected in (
        ({"prompt": "\u200b\u200b"}, "invisible"),
        ({"prompt": "   "}, "invisible"),
        ({"prompt": "ok", "seed": 2**32 - 1}, "leaves no room for 4 images"),
    ):
        # Values out of Discord's own option bounds (-1, 2**40, 1,001 characters) are covered in tests/core.
        interaction = await loopback.fake.slash("imagine", options)
        await loopback.fake.wait_for(lambda i=interaction: i.callback_type is not None)
        assert interaction.callback_type == 4
        assert interaction.callback_data["flags"] & FLAG_EPHEMERAL
        assert expected in interaction.callback_data["content"]
    assert (await loopback.store.history(user_id=int(loopback.fake.world.alice.id)))[1] == 0


async def test_u2_button_makes_a_final_with_progress_first(loopback):
    fake = loopback.fake
    drafts = await imagine(loopback, "a lighthouse")
    job = await loopback.job_of(drafts)
    click = await fake.click(drafts, f"job:{job.id}:u2", user=fake.world.bob)
    final = await fake.wait_for(
        lambda: click.original if click.original and click.original.attachments else None, what="the final"
    )
    assert [a.filename for a in final.attachments] == ["final.png"]
    assert any("step" in snapshot.content for snapshot in final.history)
    final_job = await loopback.job_of(final)
    assert (final_job.kind, final_job.parent_id, final_job.parent_index) == ("final", job.id, 1)
    assert final_job.user_id == int(fake.world.bob.id) and final_job.seed == job.seed + 1


async def test_reactions_reroll_and_delete(loopback):
    fake = loopback.fake
    world = fake.world
    drafts = await imagine(loopback, "a boat")
    job = await loopback.job_of(drafts)
    await fake.wait_for(lambda: world.bot.id in drafts.reactions.get("🔁", []))
    before = len(fake.bot_messages(world.general))
    await fake.react(drafts, "🔁", user=world.bob)
    reroll = await fake.wait_for_message(lambda m: m.reply_to == drafts.id and len(m.attachments) == 4)
    rerolled = await loopback.job_of(reroll)
    assert rerolled.mode == "reroll" and rerolled.params.reroll_of == job.id and rerolled.seed != job.seed
    assert len(fake.bot_messages(world.general)) == before + 1

    await fake.react(drafts, "❌", user=world.bob)  # not the author: refused
    await asyncio.sleep(0.3)
    assert not fake.message(drafts.id).deleted
    await fake.react(drafts, "❌", user=world.alice)
    await fake.wait_for(lambda: fake.message(drafts.id).deleted, what="the deletion")


async def test_history_and_show(loopback):
    fake = loopback.fake
    drafts = await imagine(loopback, "100% cotton 'shirt'")
    job = await loopback.job_of(drafts)
    listing = await fake.slash("history", {"search": "100%"})
    await fake.wait_for(lambda: listing.callback_type is not None)
    assert listing.callback_data["flags"] & FLAG_EPHEMERAL and "cotton" in listing.callback_data["content"]
    other = await fake.slash("history", {"user": fake.world.alice}, user=fake.world.bob)
    await fake.wait_for(lambda: other.callback_type is not None)
    assert "Only moderators" in other.callback_data["content"] and "cotton" not in other.callback_data["content"]
    show = await fake.slash("show", {"job": job.id})
    again = await fake.wait_for(lambda: show.original if show.original and show.original.attachments else None)
    assert (await loopback.job_of(again)).params.repost_of == job.id


async def test_image_channel(loopback):
    fake = loopback.fake
    world = fake.world
    setting = await fake.slash("settings channels add", {"channel": world.general}, user=world.moderator)
    await fake.wait_for(lambda: setting.callback_type is not None)
    assert "is now an image channel" in setting.callback_data["content"]
    refused = await fake.slash("settings channels add", {"channel": world.general}, user=world.alice, force=True)
    await fake.wait_for(lambda: refused.callback_type is not None)
    assert "Manage Server" in refused.callback_data["content"]

    prompt = await fake.say(world.general, "a castle on a hill", user=world.alice)
    result = await fake.wait_for_message(lambda m: m.reply_to == prompt.id and len(m.attachments) == 4)
    assert (await loopback.job_of(result)).source_message_id == int(prompt.id)
    picture = await fake.say(world.general, "", user=world.alice, attachments=[("cat.png", b"\x89PNG")])
    answer = await fake.wait_for_message(lambda m: m.reply_to == picture.id)
    assert "Images alone" in answer.content and not answer.attachments
    assert "A prompt with the image attached uses it as the image reference." in answer.content  # the offer has one


async def test_expired_token_posts_in_the_channel(loopback):
    fake = loopback.fake
    loopback.engine.paused = True
    interaction = await fake.slash("imagine", {"prompt": "slow boat"})
    await fake.wait_for(lambda: interaction.callback_type == 5)
    interaction.expired = True  # as if 15 minutes had passed
    loopback.engine.paused = False
    result = await fake.wait_for_message(
        lambda m: m.reply_to == interaction.original_message_id and len(m.attachments) == 4, timeout=10
    )
    assert (await loopback.job_of(result)).status == "done"
    fake.take_errors()  # the refused webhook edit is what this test provokes


async def test_restart_delivers_waiting_jobs_and_old_buttons_still_work(loopback):
    fake = loopback.fake
    drafts = await imagine(loopback, "before the restart")
    job = await loopback.job_of(drafts)
    loopback.engine.paused = True
    waiting = [
        await fake.slash("imagine", {"prompt": f"waiting {i}"}, user=u)
        for i, u in enumerate((fake.world.alice, fake.world.bob))
    ]
    await fake.wait_for(lambda: all(i.callback_type == 5 for i in waiting))
    await loopback.stop()

    await loopback.start()
    for interaction in waiting:
        await fake.wait_for(
            lambda i=interaction: i.original is not None and len(i.original.attachments) == 4, what="restarted job"
        )
    click = await fake.click(drafts, f"job:{job.id}:v3")
    variation = await fake.wait_for(lambda: click.original if click.original and click.original.attachments else None)
    assert (await loopback.job_of(variation)).parent_index == 2


async def test_queue_and_cancel(loopback):
    fake = loopback.fake
    loopback.engine.paused = True
    first = await fake.slash("imagine", {"prompt": "first"}, user=fake.world.bob)
    mine = await fake.slash("imagine", {"prompt": "mine"})
    await fake.wait_for(lambda: first.callback_type == 5 and mine.callback_type == 5)
    await fake.wait_for(lambda: mine.original is not None and "position 2" in mine.original.content)
    queue = await fake.slash("queue")
    await fake.wait_for(lambda: queue.callback_type is not None)
    assert "2 waiting" in queue.callback_data["content"] and "position 2" in queue.callback_data["content"]
    cancel = await fake.slash("cancel")
    await fake.wait_for(lambda: cancel.callback_type is not None)
    assert cancel.callback_data["content"].startswith("Cancelled job #")
    await fake.wait_for(lambda: "Cancelled" in mine.original.content, what="the cancelled state")
    other = await fake.slash("cancel", {"job": int(cancel.callback_data["content"].split("#")[1].rstrip(".")) - 1})
    await fake.wait_for(lambda: other.callback_type is not None)
    assert "not yours" in other.callback_data["content"] and other.callback_data["flags"] & FLAG_EPHEMERAL
    loopback.engine.paused = False
    await fake.wait_for(lambda: first.original is not None and len(first.original.attachments) == 4)


async def test_history_menu_reposts_with_live_buttons(loopback):
    fake = loopback.fake
    drafts = await imagine(loopback, "a red kite")
    job = await loopback.job_of(drafts)
    listing = await fake.slash("history")
    await fake.wait_for(lambda: listing.original is not None)
    pick = await fake.click(listing.original, f"histpost:{fake.world.alice.id}", values=[str(job.id)])
    again = await fake.wait_for(lambda: pick.original if pick.original and pick.original.attachments else None)
    repost = await loopback.job_of(again)
    assert repost.params.repost_of == job.id and repost.seed == job.seed
    assert again.custom_ids()[0] == f"job:{repost.id}:u1"


async def test_image_channel_where_the_bot_may_not_post(loopback, caplog):
    fake = loopback.fake
    world = fake.world
    setting = await fake.slash("settings channels add", {"channel": world.readonly}, user=world.moderator)
    await fake.wait_for(lambda: setting.callback_type is not None)
    assert "missing Send Messages" in setting.callback_data["content"]
    await fake.say(world.readonly, "a prompt nobody can answer", user=world.alice)
    await fake.wait_for(lambda: any("may not send messages" in r.getMessage() for r in caplog.records))
    assert fake.bot_messages(world.readonly) == []


async def test_edit_takes_a_region_of_all_four_sides_only(loopback):
    fake = loopback.fake
    picture = Upload("street.png", test_image(640, 480), content_type="image/png")
    partial = await fake.slash("edit", {"image": picture, "prompt": "a door", "left": 50, "top": 0, "width": 50})
    await fake.wait_for(lambda: partial.callback_type is not None, what="the refusal")
    assert partial.callback_data["flags"] & FLAG_EPHEMERAL and "all four of" in partial.callback_data["content"]

    sides = {"left": 50, "top": 0, "width": 50, "height": 100}
    edit = await fake.slash("edit", {"image": picture, "prompt": "a blue door", **sides, "seed": 4})
    result = await fake.wait_for(lambda: edit.original if edit.original and edit.original.attachments else None)
    job = await loopback.job_of(result)
    assert (job.mode, job.params.region) == ("inpaint", (50, 0, 50, 100))


async def test_strength_without_an_image_is_refused_and_nothing_is_queued(loopback):
    refused = await loopback.fake.slash("imagine", {"prompt": "a fox", "strength": 0.5})
    await loopback.fake.wait_for(lambda: refused.callback_type is not None, what="the refusal")
    assert refused.callback_data["flags"] & FLAG_EPHEMERAL
    assert refused.callback_data["content"] == "Strength only matters with an image: attach one, or leave strength out."
    assert loopback.engine.submitted == []
