"""Remix (the prompts edited, the rest kept), Upscale (subtle / creative) 2x, and what Upscale and Vary start from."""

from __future__ import annotations

import dataclasses
import io
import os

import pytest
from PIL import Image

from core.jobs.rows import rebuild_request
from core.limits import Refusal
from engine.api import DraftRequest, FinalRequest, ImageInit, UpscaleRequest
from tests.core.doubles import FakeEngine, RecordingDelivery, RecordingOrigin, eventually, planned_steps
from tests.core.jobs.support import make_service, wait_status


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


async def done(store, engine, job):
    engine.finish(job.id)
    return await wait_status(store, job.id, "done")


# --------------------------------------------------------------------------- Remix


async def test_remix_of_drafts_keeps_seed_size_and_settings_with_the_edited_prompts(service, store, engine):
    drafts = await done(store, engine, await service.imagine(
        RecordingOrigin(), prompt="a red fox", negative_prompt="blur", aspect="16:9", seed=40
    ))
    origin = RecordingOrigin(user_id=2)
    remix = await service.remix(origin, drafts.id, prompt="a red fox in the snow", negative_prompt=None)
    assert origin.refusals == []
    request = engine.item(remix.id).request
    assert isinstance(request, DraftRequest)
    assert request == DraftRequest(prompt="a red fox in the snow", seed=40, negative_prompt="", width=drafts.width,
                                   height=drafts.height, count=4, steps=drafts.steps)
    row = await store.get_job(remix.id)
    assert (row.kind, row.mode, row.parent_id, row.seed, row.prompt) == (
        "draft", "remix", drafts.id, 40, "a red fox in the snow"
    )
    assert row.params.remix_of == drafts.id and row.params.aspect == "16:9"
    assert await rebuild_request(store, row) == request
    await done(store, engine, remix)
    delivery = origin.deliveries[0]
    await eventually(lambda: delivery.posts)
    assert f"remix of job #{drafts.id}" in delivery.posts[0][0]


async def test_a_remixed_final_stays_a_final_with_its_model_and_steps(service, store, engine):
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a harbour", seed=3, model="sdxl"))
    remix = await service.remix(RecordingOrigin(), final.id, prompt="a harbour at night", negative_prompt="people")
    request = engine.item(remix.id).request
    parent_request = await rebuild_request(store, final)
    assert request == dataclasses.replace(parent_request, prompt="a harbour at night", negative_prompt="people")
    assert isinstance(request, FinalRequest) and (request.model, request.seed) == ("sdxl", 3)
    row = await store.get_job(remix.id)
    assert (row.kind, row.mode, row.parent_id, row.negative_prompt) == ("final", "remix", final.id, "people")


@pytest.mark.parametrize(
    ("prompt", "negative", "expected"),
    [
        ("", None, "empty"),
        ("x" * 1001, None, "1,001 characters"),
        ("lots of gore", None, "“gore”"),
        ("fine", "n" * 1001, "negative prompt is 1,001"),
    ],
)
async def test_a_remix_is_checked_like_any_prompt(service, store, engine, prompt, negative, expected):
    await service.guilds.update(10, blocked_words=("gore",))
    drafts = await done(store, engine, await service.imagine(RecordingOrigin(), prompt="a cat"))
    origin = RecordingOrigin()
    assert await service.remix(origin, drafts.id, prompt=prompt, negative_prompt=negative) is None
    assert len(origin.refusals) == 1 and expected in origin.refusals[0]
    assert (await store.history(user_id=1))[1] == 1  # nothing stored


async def test_remix_refusals(service, store, engine):
    drafts = await done(store, engine, await service.imagine(RecordingOrigin(), prompt="a cat"))
    origin = RecordingOrigin()
    assert await service.remix(origin, 424242, prompt="a dog") is None
    assert "There is no job #424242" in origin.refusals[-1]
    elsewhere = RecordingOrigin(guild_id=11)
    assert await service.remix(elsewhere, drafts.id, prompt="a dog") is None
    assert "another server" in elsewhere.refusals[-1]
    with pytest.raises(Refusal, match="another server"):  # before the form opens
        await service.remix_source(RecordingOrigin(guild_id=11), drafts.id)
    await service.guilds.update(10, finals_outside_nsfw=False)
    final = await service.final(RecordingOrigin(age_restricted=True), prompt="x")
    outside = RecordingOrigin()
    assert await service.remix(outside, final.id, prompt="y") is None
    assert "age-restricted channels only" in outside.refusals[-1]
    assert len(engine.submitted) == 2


# --------------------------------------------------------------------------- Upscale 2x


async def test_upscale_subtle_enlarges_the_finals_stored_image_2x(service, store, engine, inputs):
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a harbour", seed=3))
    source = inputs.result_sync(final.id)
    origin = RecordingOrigin()
    job = await service.upscale_2x(origin, final.id, "upscale_subtle")
    assert origin.refusals == []
    request = engine.item(job.id).request
    assert request == UpscaleRequest(image=source, mode="subtle", prompt="a harbour", seed=3, model=final.model)
    row = await done(store, engine, job)
    assert (row.kind, row.mode, row.parent_id, row.params.upscale) == ("final", "upscale2x", final.id, "subtle")
    assert row.params.init_result == final.id and row.params.init_image is None
    assert not inputs.inputs.exists() or list(inputs.inputs.iterdir()) == []  # no second copy of the final's image
    assert (row.width, row.height) == (2 * final.width, 2 * final.height)
    delivery = origin.deliveries[0]
    await eventually(lambda: delivery.posts)
    content, files, view = delivery.posts[0]
    assert [name for name, _ in files] == ["final.png"] and size_of(files[0][1]) == (2048, 2048)
    assert f"Upscaled 2x (subtle) from job #{final.id}" in content and "steps" not in content
    ids = [item.custom_id for item in view.children]
    assert f"job:{job.id}:vary_subtle" in ids and f"job:{job.id}:upscale_subtle" not in ids
    twice = RecordingOrigin()
    assert await service.upscale_2x(twice, job.id, "upscale_subtle") is None
    assert "upscaled already" in twice.refusals[0]

    # 🔁 and a re-post (/show) make it again from the final's kept image, which its row names.
    rerolled = await service.reroll(RecordingOrigin(), job.id)
    again = engine.item(rerolled.id).request
    assert isinstance(again, UpscaleRequest) and again.image == source and again.mode == "subtle"
    reposted = await service.repost(RecordingOrigin(), job.id)
    assert engine.item(reposted.id).request == request
    assert (await store.get_job(reposted.id)).mode == "upscale2x"


async def test_a_vary_of_an_upscaled_final_draws_at_the_size_of_the_final_it_enlarged(service, store, engine, inputs):
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a harbour", seed=3))
    upscaled = await done(store, engine, await service.upscale_2x(RecordingOrigin(), final.id, "upscale_subtle"))
    assert (upscaled.width, upscaled.height) == (2 * final.width, 2 * final.height)
    varied = await service.vary(RecordingOrigin(), upscaled.id, "vary_subtle")
    request = engine.item(varied.id).request
    assert (request.width, request.height) == (final.width, final.height)
    assert request.init == ImageInit(inputs.result_sync(upscaled.id))  # from the enlarged picture, drawn smaller


async def test_a_vary_of_an_upscaled_final_runs_the_steps_a_vary_of_that_final_runs(service, store, engine):
    """The upscale's row counts no drawing steps (a subtle one: 0), so they are not the Vary's."""
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a harbour", seed=3))
    upscaled = await done(store, engine, await service.upscale_2x(RecordingOrigin(), final.id, "upscale_subtle"))
    of_final = engine.item((await service.vary(RecordingOrigin(), final.id, "vary_subtle")).id).request
    of_upscaled = engine.item((await service.vary(RecordingOrigin(), upscaled.id, "vary_subtle")).id).request
    steps = engine.offer.final_steps
    assert planned_steps(of_upscaled, steps) == planned_steps(of_final, steps) == final.steps


async def test_the_finals_controls_offer_upscale_when_the_engine_has_an_upscaler(service, store, engine):
    origin = RecordingOrigin()
    final = await done(store, engine, await service.final(origin, prompt="a harbour"))
    await eventually(lambda: origin.deliveries[0].posts)
    ids = [item.custom_id for item in origin.deliveries[0].posts[0][2].children]
    assert f"job:{final.id}:upscale_subtle" in ids and f"job:{final.id}:upscale_creative" in ids
    engine.offer = dataclasses.replace(engine.offer, upscaler="")
    origin = RecordingOrigin()
    final = await done(store, engine, await service.final(origin, prompt="a harbour"))
    await eventually(lambda: origin.deliveries[0].posts)
    ids = [item.custom_id for item in origin.deliveries[0].posts[0][2].children]
    assert not [i for i in ids if "upscale" in i]
    refused = RecordingOrigin()
    assert await service.upscale_2x(refused, final.id, "upscale_subtle") is None
    assert "no upscaler" in refused.refusals[0]


async def test_upscale_refusals(service, store, engine, inputs):
    drafts = await done(store, engine, await service.imagine(RecordingOrigin(), prompt="a cat"))
    origin = RecordingOrigin()
    assert await service.upscale_2x(origin, drafts.id, "upscale_subtle") is None
    assert "Upscale buttons work on finals" in origin.refusals[-1]
    assert await service.upscale_2x(origin, drafts.id, "upscale_wild") is None
    assert "Unknown upscale" in origin.refusals[-1]
    final = await service.final(RecordingOrigin(), prompt="a harbour")
    assert await service.upscale_2x(origin, final.id, "upscale_creative") is None
    assert "isn't finished yet" in origin.refusals[-1]
    assert len(engine.submitted) == 2
    assert service.images._holding_results == {}  # a refused request holds no final's image for later prunes


# --------------------------------------------------------------------------- what Upscale and Vary start from

# Both start from the final's kept result, which their row names (``init_result``) instead of a copy.
FROM_THE_FINAL = pytest.mark.parametrize(
    ("method", "action", "factor"), [("upscale_2x", "upscale_creative", 2), ("vary", "vary_subtle", 1)]
)


def start_image(request) -> bytes:
    return request.image if isinstance(request, UpscaleRequest) else request.init.data


@FROM_THE_FINAL
async def test_a_queued_job_from_a_final_runs_after_a_restart_and_no_prune_takes_its_image(
    store, engine, inputs, tmp_path, method, action, factor
):
    first = make_service(store, engine, inputs=inputs)
    final = await done(store, engine, await first.final(RecordingOrigin(), prompt="a harbour", seed=3))
    other = await done(store, engine, await first.final(RecordingOrigin(), prompt="a field", seed=4))
    source = inputs.result_sync(final.id)
    job = await getattr(first, method)(RecordingOrigin(), final.id, action)
    before = engine.item(job.id).request
    assert start_image(before) == source
    await first.shutdown(0.0)
    assert (await store.get_job(job.id)).status == "queued"

    # Long past the retention and over the cap: only what a job still to run starts from stays.
    for path in inputs.results.iterdir():
        os.utime(path, (1, 1))
    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    delivered: list[RecordingDelivery] = []

    def delivery_for_job(client, row):
        delivered.append(RecordingDelivery(channel_id=row.channel_id, placeholder_id=row.result_message_id))
        return delivered[-1]

    second = make_service(store, engine, inputs=inputs, delivery_for_job=delivery_for_job)
    second.settings = second.settings.model_copy(update={"image_retention_days": 1.0, "image_store_max_mb": 0})
    try:
        removed, _ = await second.prune_images()
        assert removed == 1 and inputs.result_sync(other.id) is None and inputs.result_sync(final.id) == source
        assert await second.start() == 1
        assert engine.item(job.id).request == before
        await done(store, engine, job)
        await eventually(lambda: delivered[0].posts)
        assert size_of(delivered[0].posts[0][1][0][1]) == (factor * final.width, factor * final.height)
    finally:
        await second.shutdown(0.0)


@FROM_THE_FINAL
@pytest.mark.parametrize("moment", ["right after the check reads it", "just before the row is written"])
async def test_a_prune_while_a_job_from_a_final_is_admitted_keeps_the_finals_image(
    service, store, engine, inputs, monkeypatch, method, action, factor, moment
):
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a harbour", seed=3))
    assert await service.prune_images() == (0, 0)  # after the delivery's own prune: none runs again for an hour
    os.utime(inputs.results / f"{final.id}.png", (1, 1))
    service.settings = service.settings.model_copy(update={"image_retention_days": 1.0, "image_store_max_mb": 0})
    real_result, real_create = inputs.result, store.create_job
    pruned = []

    async def read_then_prune(job_id):  # the check has the bytes; the row naming them is not written yet
        data = await real_result(job_id)
        pruned.append(await service.prune_images())
        return data

    async def prune_then_create(new_job):
        pruned.append(await service.prune_images())
        return await real_create(new_job)

    if moment.startswith("right after"):
        monkeypatch.setattr(inputs, "result", read_then_prune)
    else:
        monkeypatch.setattr(store, "create_job", prune_then_create)
    job = await getattr(service, method)(RecordingOrigin(), final.id, action)
    monkeypatch.undo()
    assert job is not None and pruned == [(0, 0)] and inputs.result_sync(final.id) is not None
    assert service.images._holding_results == {}  # the row names it now
    assert await service.prune_images() == (0, 0)  # ... and keeps it while the job waits
    assert await service.checks.rebuild(await store.get_job(job.id))  # 🔁, /show and a restart find the image
