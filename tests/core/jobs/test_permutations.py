"""Parameters in the prompt and {a, b} permutations through the job service: rows, messages, limits."""

from __future__ import annotations

from core.jobs.permutations import not_queued_text
from engine.api import DraftRequest, FinalRequest
from tests.core.doubles import RecordingOrigin
from tests.core.jobs.support import wait_status


async def test_parameters_in_the_text_fill_the_row(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a fox --ar 16:9 --seed 5 --no trees, people --chaos 20 --tile")
    assert origin.refusals == []
    row = await store.get_job(job.id)
    assert (row.prompt, row.seed, row.negative_prompt, (row.width, row.height)) == (
        "a fox", 5, "trees, people", (704, 384)
    )
    assert (row.params.aspect, row.params.chaos, row.params.tile) == ("16:9", 20, True)
    request = engine.item(job.id).request
    assert isinstance(request, DraftRequest) and (request.chaos, request.tile) == (20, True)


async def test_slash_options_win_over_the_text(service, store):
    job = await service.imagine(RecordingOrigin(), prompt="a fox --seed 5 --ar 16:9", seed=9, aspect="1:1")
    row = await store.get_job(job.id)
    assert (row.seed, row.params.aspect, row.width) == (9, "1:1", 512)


async def test_bad_parameters_are_refused_by_name_and_nothing_is_stored(service, store, engine):
    for text, named in (
        ("a fox --size 3", "--size"),
        ("a fox --steps 9", "--steps"),
        ("a fox --style nosuchstyle", "There is no style “nosuchstyle”"),
        ("a {red, blue} car --steps {2, 9}", "--steps"),  # one bad combination: none is queued
    ):
        origin = RecordingOrigin()
        assert await service.imagine(origin, prompt=text) is None
        assert len(origin.refusals) == 1 and named in origin.refusals[0], (text, origin.refusals)
        assert origin.deliveries == []
    origin = RecordingOrigin()
    assert await service.final(origin, prompt="x --chaos 5") is None and "--chaos" in origin.refusals[0]
    assert engine.submitted == [] and (await store.history(user_id=1))[1] == 0


async def test_final_takes_steps_tile_and_model_from_the_text(service, store, engine):
    job = await service.final(RecordingOrigin(), prompt="bricks --tile --steps 12 --model sdxl --ar 3:2")
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest)
    assert (request.tile, request.steps, request.model, request.width) == (True, 12, "sdxl", 1280)
    row = await store.get_job(job.id)
    assert (row.steps, row.model, row.params.tile) == (12, "sdxl", True)


async def test_reroll_upscale_and_repost_repeat_chaos_and_tile(service, store, engine):
    draft = await service.imagine(RecordingOrigin(), prompt="moss --seed 40 --chaos 60 --tile --model sdxl")
    engine.finish(draft.id)
    await wait_status(store, draft.id, "done")
    drafts_request = engine.item(draft.id).request
    reroll = await service.reroll(RecordingOrigin(), draft.id)
    rerolled = engine.item(reroll.id).request
    assert (rerolled.chaos, rerolled.tile) == (60, True) and rerolled.seed != 40
    final = await service.final_of_draft(RecordingOrigin(), draft.id, 3)
    upscaled = engine.item(final.id).request
    assert (upscaled.seed, upscaled.tile, upscaled.model) == (drafts_request.seeds[3], True, "sdxl")
    assert upscaled.seed != 43  # chaos moved the seed of draft 4 away from seed + 3
    again = await service.repost(RecordingOrigin(), draft.id)
    assert engine.item(again.id).request == drafts_request


async def test_each_permutation_is_a_job_with_its_own_message(service, store, engine):
    origin = RecordingOrigin()
    first = await service.imagine(origin, prompt="a {red, blue} car --seed 3")
    assert origin.refusals == [] and len(origin.deliveries) == 2
    prompts = [item.request.prompt for item in engine.submitted]
    assert prompts == ["a red car", "a blue car"]
    assert (await store.get_job(first.id)).prompt == "a red car"
    assert (await store.history(user_id=1))[1] == 2


async def test_combinations_refused_by_the_limits_are_named(service, store, engine):
    await service.guilds.update(10, max_waiting_per_user=2)
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="a {red, blue, green} car") is not None
    assert len(origin.deliveries) == 2 and (await store.history(user_id=1))[1] == 2
    [refusal] = origin.refusals
    assert refusal.startswith("1 of the 3 combinations was not queued:") and "“a green car”" in refusal
    assert "a red car" not in refusal


def test_when_every_combination_is_refused_for_one_reason_it_is_said_once():
    assert not_queued_text([("a", "Full."), ("b", "Full.")], 2) == "None of the 2 combinations was queued: Full."


async def test_style_typed_in_the_prompt_is_the_servers_preset(service, store):
    job = await service.imagine(RecordingOrigin(), prompt="a lighthouse --style watercolor")
    row = await store.get_job(job.id)
    assert row.params.style == "watercolor" and row.prompt.startswith("a lighthouse, ") and "watercolor" in row.prompt
