"""The façade's commands end to end on the fake engine: the check step, U / V / 🔁 / re-post, cancel, /prefer."""

from __future__ import annotations

import dataclasses

import pytest

from core.jobs.rows import rebuild_request
from engine.api import MAX_PROMPT_CHARS, MAX_SEED, DraftInit, FinalRequest
from tests.core.doubles import RecordingOrigin, eventually, png
from tests.core.jobs.support import wait_status

# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "   \n\t "}, "blank or invisible"),
        ({"prompt": "\u200b\u200c\u200d\u2060\ufeff"}, "blank or invisible"),
        ({"prompt": "x" * 1001}, "1,001 characters"),
        ({"prompt": "ok", "seed": -1}, "Seed -1 is out of range"),
        ({"prompt": "ok", "seed": 2**40}, f"Seed {2**40} is out of range"),
        ({"prompt": "ok", "seed": MAX_SEED}, "leaves no room for 4 images"),
        ({"prompt": "ok", "aspect": "7:5"}, "Unknown aspect ratio “7:5”"),
        ({"prompt": "ok", "negative_prompt": "n" * 1001}, "negative prompt is 1,001"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_queued(service, store, engine, kwargs, expected):
    origin = RecordingOrigin()
    assert await service.imagine(origin, **kwargs) is None
    assert len(origin.refusals) == 1 and expected in origin.refusals[0]
    assert origin.deliveries == [] and engine.submitted == []
    assert (await store.history(user_id=1))[1] == 0


async def test_emoji_only_prompt_is_accepted(service, engine):
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="🦊❄️🌲") is not None
    assert origin.refusals == [] and engine.submitted[0].request.prompt == "🦊❄️🌲"


async def test_final_seed_may_be_the_largest(service, engine):
    assert await service.final(RecordingOrigin(), prompt="ok", seed=MAX_SEED) is not None
    assert engine.submitted[0].request.seed == MAX_SEED


async def test_unknown_model_is_refused(service, engine):
    origin = RecordingOrigin()
    assert await service.final(origin, prompt="ok", model="dall-e") is None
    assert "Unknown model “dall-e”" in origin.refusals[0] and engine.submitted == []


async def test_blocked_words_only_outside_age_restricted_channels(service, store):
    await service.guilds.update(10, blocked_words=("gore",))
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="lots of Gore here") is None
    assert "“gore”" in origin.refusals[0]
    assert await service.imagine(RecordingOrigin(), prompt="gorgeous sunset") is not None  # whole words only
    assert await service.imagine(RecordingOrigin(age_restricted=True), prompt="gore") is not None


async def test_finals_outside_age_restricted_channels_can_be_turned_off(service, store, engine):
    await service.guilds.update(10, finals_outside_nsfw=False)
    origin = RecordingOrigin()
    assert await service.final(origin, prompt="x") is None
    assert "age-restricted channels only" in origin.refusals[0]
    draft = await service.imagine(RecordingOrigin(age_restricted=True), prompt="x")
    engine.finish(draft.id)
    await wait_status(store, draft.id, "done")
    origin = RecordingOrigin()
    assert await service.final_of_draft(origin, draft.id, 1) is None
    assert "age-restricted channels only" in origin.refusals[0]
    assert await service.final(RecordingOrigin(age_restricted=True), prompt="x") is not None


async def test_direct_messages_are_refused(service):
    origin = RecordingOrigin(guild_id=None)
    assert await service.imagine(origin, prompt="x") is None
    assert "servers only" in origin.refusals[0]


# --------------------------------------------------------------------------- U / V / reroll / repost


async def finished_draft(service, store, engine, **kwargs):
    job = await service.imagine(RecordingOrigin(), prompt=kwargs.pop("prompt", "a tree"), seed=100, **kwargs)
    engine.finish(job.id)
    return await wait_status(store, job.id, "done")


async def test_upscale_starts_from_the_draft(service, store, engine):
    draft = await finished_draft(service, store, engine, aspect="3:2")
    origin = RecordingOrigin(user_id=5)
    final = await service.final_of_draft(origin, draft.id, 1)
    request = engine.item(final.id).request
    assert isinstance(request, FinalRequest) and request.seed == 101
    assert request.init == DraftInit(engine.item(draft.id).request, 1)
    assert request.strength == engine.offer.upscale_strength
    assert (request.width, request.height) == (1280, 832)  # 3:2 at about 1024x1024 pixels
    assert (final.kind, final.mode, final.parent_id, final.parent_index, final.user_id) == (
        "final",
        "upscale",
        draft.id,
        1,
        5,
    )


async def test_variation_and_its_variation_rebuild_the_chain(service, store, engine):
    draft = await finished_draft(service, store, engine)
    variation = await service.variation(RecordingOrigin(), draft.id, 2)
    engine.finish(variation.id)
    await wait_status(store, variation.id, "done")
    second = await service.variation(RecordingOrigin(), variation.id, 0)
    request = engine.item(second.id).request
    assert request.init.draft == engine.item(variation.id).request
    assert request.init.draft.init == DraftInit(engine.item(draft.id).request, 2)
    assert (request.steps, request.strength) == (2, 0.5)
    assert await rebuild_request(store, await store.get_job(second.id)) == request


async def test_u_and_v_refusals(service, store, engine):
    waiting = await service.imagine(RecordingOrigin(), prompt="slow")
    origin = RecordingOrigin()
    await service.final_of_draft(origin, waiting.id, 0)
    await service.final_of_draft(origin, 999, 0)
    draft = await finished_draft(service, store, engine)
    await service.variation(origin, draft.id, 4)
    final = await service.final_of_draft(RecordingOrigin(), draft.id, 0)
    engine.finish(final.id)
    await wait_status(store, final.id, "done")
    await service.final_of_draft(origin, final.id, 0)
    other_guild = RecordingOrigin(guild_id=11)
    await service.final_of_draft(other_guild, draft.id, 0)
    assert origin.refusals == [
        f"Job #{waiting.id} isn't finished yet.",
        "There is no job #999.",
        f"Job #{draft.id} has 4 images; there is no image 5.",
        f"Job #{final.id} is a final; U and V buttons work on drafts.",
    ]
    assert other_guild.refusals == [f"Job #{draft.id} was made in another server."]


async def test_reroll_keeps_everything_but_the_seed(service, store, engine):
    draft = await finished_draft(service, store, engine, negative_prompt="blur", aspect="2:3")
    job = await service.reroll(RecordingOrigin(user_id=3), draft.id)
    old, new = engine.item(draft.id).request, engine.item(job.id).request
    assert new.seed != old.seed or new.seed == old.seed == 0
    assert dataclasses.replace(new, seed=old.seed) == old
    assert (job.mode, job.parent_id, job.params.reroll_of, job.user_id) == ("reroll", draft.id, draft.id, 3)


async def test_repost_is_the_same_request_and_only_for_the_author_or_moderators(service, store, engine):
    draft = await finished_draft(service, store, engine)
    stranger = RecordingOrigin(user_id=9)
    assert await service.repost(stranger, draft.id) is None
    assert "belongs to someone else" in stranger.refusals[0]
    again = await service.repost(RecordingOrigin(user_id=9, moderator=True), draft.id)
    assert engine.item(again.id).request == engine.item(draft.id).request
    assert again.params.repost_of == draft.id


# --------------------------------------------------------------------------- cancel


async def test_cancel_by_author_moderator_and_others(service, store, engine):
    job = await service.imagine(RecordingOrigin(user_id=1), prompt="x")
    with pytest.raises(Exception, match="not yours"):
        await service.cancel(job.id, user_id=2, moderator=False, guild_id=10)
    with pytest.raises(Exception, match="another server"):
        await service.cancel(job.id, user_id=1, moderator=False, guild_id=11)
    assert await service.cancel(job.id, user_id=1, moderator=False, guild_id=10) == f"Cancelled job #{job.id}."
    await wait_status(store, job.id, "cancelled")
    with pytest.raises(Exception, match="already cancelled"):
        await service.cancel(job.id, user_id=1, moderator=False, guild_id=10)
    other = await service.imagine(RecordingOrigin(user_id=1), prompt="y")
    assert "Cancelled" in await service.cancel(other.id, user_id=7, moderator=True, guild_id=10)
    await wait_status(store, other.id, "cancelled")
    with pytest.raises(Exception, match="no job #-3"):
        await service.cancel(-3, user_id=1, moderator=False, guild_id=10)


# --------------------------------------------------------------------------- /prefer defaults applied


async def test_imagine_fills_empty_options_from_prefs_and_the_row_keeps_the_effective_values(service, store, engine):
    await service.prefs.update(1, aspect="16:9", negative_prompt="blurry", style_suffix="watercolor")
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=5)
    assert origin.refusals == []
    request = engine.item(job.id).request
    assert (request.prompt, request.negative_prompt, (request.width, request.height)) == (
        "a red fox, watercolor",
        "blurry",
        (704, 384),
    )
    row = await store.get_job(job.id)
    assert (row.prompt, row.negative_prompt, row.params.aspect) == ("a red fox, watercolor", "blurry", "16:9")
    assert row.params.prefs == ("aspect", "negative_prompt", "style_suffix")

    # What the user gives wins; the suffix is still appended.
    mine = await service.imagine(origin, prompt="a cat", negative_prompt="dogs", aspect="1:1", seed=5)
    request = engine.item(mine.id).request
    assert (request.prompt, request.negative_prompt, request.width) == ("a cat, watercolor", "dogs", 512)

    # Another user is untouched.
    other = await service.imagine(RecordingOrigin(user_id=2), prompt="a cat", seed=5)
    row = await store.get_job(other.id)
    assert (row.prompt, row.negative_prompt, row.params.prefs) == ("a cat", "", ())


async def test_a_reroll_repeats_the_stored_prompt_without_adding_the_suffix_again(service, store, engine):
    await service.prefs.update(1, style_suffix="watercolor")
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=5)
    engine.finish(job.id)
    await eventually(lambda: origin.deliveries[0].posts)
    await service.prefs.update(1, style_suffix="oil paint")  # changed since: the reroll must not pick it up
    reroll = await service.reroll(RecordingOrigin(), job.id)
    assert engine.item(reroll.id).request.prompt == "a red fox, watercolor"


async def test_final_uses_the_preferred_model_unless_one_is_chosen(service, engine):
    await service.prefs.update(1, final_model="sdxl", aspect="9:16")
    job = await service.final(RecordingOrigin(), prompt="a lighthouse", seed=3)
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest) and request.model == "sdxl" and request.height > request.width
    chosen = await service.final(RecordingOrigin(), prompt="a lighthouse", seed=3, model="ssd-1b")
    assert engine.item(chosen.id).request.model == "ssd-1b"


async def test_upscale_uses_the_clickers_preferred_model(service, store, engine):
    origin = RecordingOrigin()
    drafts = await service.imagine(origin, prompt="a fox", seed=1)
    engine.finish(drafts.id)
    await eventually(lambda: origin.deliveries[0].posts)
    await service.prefs.update(1, final_model="sdxl")
    final = await service.final_of_draft(RecordingOrigin(), drafts.id, 0)
    assert engine.item(final.id).request.model == "sdxl"
    assert (await store.get_job(final.id)).params.prefs == ("final_model",)


async def test_the_suffix_cannot_push_a_prompt_over_the_limit_or_past_blocked_words(service, store, engine):
    await service.prefs.update(1, style_suffix="watercolor")
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="p" * (MAX_PROMPT_CHARS - 5)) is None
    assert "with your style suffix" in origin.refusals[-1] and engine.submitted == []
    await service.guilds.update(10, blocked_words=("watercolor",))
    assert await service.final(origin, prompt="a fox") is None
    assert "watercolor" in origin.refusals[-1] and engine.submitted == []


async def test_an_image_keeps_its_own_aspect_despite_the_preferred_one(service, engine):
    await service.prefs.update(1, aspect="16:9")
    job = await service.imagine(RecordingOrigin(), prompt="a fox", image=png(512, 512), seed=1)
    request = engine.item(job.id).request
    assert request.width == request.height
