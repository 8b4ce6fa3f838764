"""Creative controls in the job service: image-to-image from an upload, /edit, zoom out and pan."""

from __future__ import annotations

import dataclasses
import io
import os

import pytest
from PIL import Image

from core.jobs.rows import rebuild_request
from engine.api import DraftInit, DraftRequest, FinalRequest, ImageInit
from tests.core.doubles import FakeEngine, RecordingDelivery, RecordingOrigin, eventually, png
from tests.core.jobs.support import make_service, wait_status


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


async def test_imagine_with_an_image_starts_the_drafts_from_it(service, store, engine, inputs):
    photo = png(800, 600)
    job = await service.imagine(RecordingOrigin(), prompt="as a watercolour", image=photo, strength=0.4, seed=9)
    request = engine.item(job.id).request
    assert isinstance(request, DraftRequest) and request.init == ImageInit(photo)
    assert request.strength == 0.4 and request.steps * request.strength >= 1
    assert (request.width, request.height) == (576, 448)  # the image's aspect at the draft size
    row = await store.get_job(job.id)
    assert row.mode == "img2img" and row.strength == 0.4
    assert inputs.get_sync(row.params.init_image) == photo  # on disk before the row: survives a restart
    assert await rebuild_request(store, row, inputs) == request


async def test_the_final_of_an_image_draft_rebuilds_the_whole_chain(service, store, engine, inputs):
    photo = png(512, 512)
    drafts = await service.imagine(RecordingOrigin(), prompt="a cat", image=photo, seed=1)
    engine.finish(drafts.id)
    await wait_status(store, drafts.id, "done")
    final = await service.final_of_draft(RecordingOrigin(), drafts.id, 2)
    request = engine.item(final.id).request
    assert isinstance(request.init, DraftInit) and request.init.draft.init == ImageInit(photo)
    assert await rebuild_request(store, await store.get_job(final.id), inputs) == request


@pytest.mark.parametrize(
    ("strength", "message"),
    [(0.1, "at least 0.25"), (0.0, "out of range"), (1.5, "out of range"), ("x", "must be a number")],
)
async def test_bad_strength_is_refused(service, strength, message):
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="a cat", image=png(512, 512), strength=strength) is None
    assert message in origin.refusals[0]


async def test_edit_with_a_region_inpaints_that_rectangle(service, store, engine, inputs):
    photo = png(1024, 768)
    origin = RecordingOrigin()
    job = await service.edit(origin, prompt="a red hat", image=photo, region=(25, 0, 50, 50), seed=4)
    assert origin.refusals == []
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest) and request.init == ImageInit(photo)
    assert (request.width, request.height) == (1152, 896)
    with Image.open(io.BytesIO(request.mask)) as mask:
        assert mask.size == (1152, 896)
        assert mask.getpixel((576, 100)) == 255 and mask.getpixel((100, 100)) == 0 and mask.getpixel((576, 800)) == 0
    row = await store.get_job(job.id)
    assert row.mode == "inpaint" and row.params.region == (25, 0, 50, 50)
    assert await rebuild_request(store, row, inputs) == request


async def test_edit_with_a_mask_file(service, engine):
    mask = png(512, 512, (255, 255, 255))
    job = await service.edit(RecordingOrigin(), prompt="snow", image=png(512, 512), mask=mask, strength=0.7)
    request = engine.item(job.id).request
    assert request.mask == mask and request.strength == 0.7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Give either a mask"),
        ({"region": (0, 0, 50, 50), "mask": png(64, 64)}, "Give either a mask"),
        ({"region": (60, 0, 50, 50)}, "past the image"),
        ({"region": (0, 0, 0, 50)}, "above 0 percent"),
        ({"mask": png(256, 512, (255, 255, 255))}, "Your mask is 256×512 but the image is 512×512"),
        ({"mask": png(1024, 1024, (255, 255, 255))}, "Your mask is 1024×1024 but the image is 512×512"),
    ],
)
async def test_edit_refusals_are_specific(service, kwargs, message):
    origin = RecordingOrigin()
    assert await service.edit(origin, prompt="x", image=png(512, 512), **kwargs) is None
    assert message in origin.refusals[0]


async def final_done(service, store, engine):
    job = await service.final(RecordingOrigin(), prompt="a harbour", seed=3, model="sdxl")
    engine.finish(job.id)
    await wait_status(store, job.id, "done")
    return job


@pytest.mark.parametrize(
    ("action", "wide"),
    [("zoom15", None), ("zoom2", None), ("pan_left", True), ("pan_right", True), ("pan_up", False)],
)
async def test_zoom_and_pan_make_a_new_final_from_the_stored_image(service, store, engine, inputs, action, wide):
    parent = await final_done(service, store, engine)
    assert inputs.result_sync(parent.id) is not None  # kept at delivery
    origin = RecordingOrigin()
    job = await service.outpaint(origin, parent.id, action)
    assert origin.refusals == []
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest) and request.mask is not None and request.strength == 1.0
    assert request.model == "sdxl" and request.prompt == "a harbour" and request.seed != 3
    assert size_of(request.mask) == size_of(request.init.data) == (request.width, request.height)
    if wide is True:
        assert request.width > request.height
    elif wide is False:
        assert request.height > request.width
    else:
        assert request.width == request.height
    row = await store.get_job(job.id)
    assert (row.mode, row.parent_id, row.parent_index, row.params.outpaint) == ("outpaint", parent.id, None, action)
    assert await rebuild_request(store, row, inputs) == request
    # The new final has its own zoom and pan buttons.
    engine.finish(job.id)
    delivery = origin.deliveries[0]
    await eventually(lambda: delivery.posts)
    ids = [item.custom_id for item in delivery.posts[0][2].children]
    assert f"job:{job.id}:zoom2" in ids and f"job:{job.id}:pan_down" in ids
    assert "from job #" in delivery.posts[0][0]


async def test_outpaint_refusals(service, store, engine, inputs):
    drafts = await service.imagine(RecordingOrigin(), prompt="a cat")
    origin = RecordingOrigin()
    assert await service.outpaint(origin, drafts.id, "zoom2") is None
    assert "zoom and pan work on finals" in origin.refusals[-1]
    parent = await final_done(service, store, engine)
    (inputs.results / f"{parent.id}.png").unlink()
    assert await service.outpaint(origin, parent.id, "zoom2") is None
    assert "no longer stored" in origin.refusals[-1]
    assert await service.outpaint(origin, 999_999, "zoom2") is None
    assert "no job #999999" in origin.refusals[-1]


async def test_a_restart_picks_up_an_edit_from_its_stored_images(store, engine, inputs, tmp_path):
    first = make_service(store, engine, inputs=inputs)
    job = await first.edit(RecordingOrigin(), prompt="a red hat", image=png(512, 512), region=(0, 0, 50, 50))
    before = engine.item(job.id).request
    await first.shutdown(0.0)
    fresh = FakeEngine(str(tmp_path / "history.sqlite3"))
    second = make_service(store, fresh, inputs=inputs, delivery_for_job=lambda client, job: RecordingDelivery())
    assert await second.start() == 1
    assert fresh.item(job.id).request == before
    await second.shutdown(0.0)


@pytest.mark.parametrize(("action", "strength"), [("vary_subtle", 0.35), ("vary_strong", 0.75)])
async def test_vary_makes_a_new_final_from_the_stored_image(service, store, engine, inputs, action, strength):
    parent = await final_done(service, store, engine)
    kept = inputs.result_sync(parent.id)
    origin = RecordingOrigin()
    job = await service.vary(origin, parent.id, action)
    assert origin.refusals == []
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest) and request.init == ImageInit(kept) and request.mask is None
    assert request.strength == strength and request.seed != 3
    assert (request.prompt, request.model) == ("a harbour", "sdxl")
    assert (request.width, request.height) == (parent.width, parent.height)
    row = await store.get_job(job.id)
    assert (row.mode, row.parent_id, row.parent_index) == ("vary", parent.id, None)
    assert row.params.vary == action.removeprefix("vary_") and row.strength == strength
    assert row.params.init_result == parent.id and row.params.init_image is None
    assert not inputs.inputs.exists() or list(inputs.inputs.iterdir()) == []  # no second copy of the final's image
    assert await rebuild_request(store, row, inputs) == request  # survives a restart: the final's image is kept
    engine.finish(job.id)
    delivery = origin.deliveries[0]
    await eventually(lambda: delivery.posts)
    ids = [item.custom_id for item in delivery.posts[0][2].children]
    assert f"job:{job.id}:vary_subtle" in ids and f"job:{job.id}:zoom2" in ids
    assert f"variation of job #{parent.id}" in delivery.posts[0][0]
    await wait_status(store, job.id, "done")

    # 🔁 and a re-post (/show) make it again from the final's kept image, which its row names.
    rerolled = await service.reroll(RecordingOrigin(), job.id)
    again = engine.item(rerolled.id).request
    assert isinstance(again, FinalRequest) and again.init == ImageInit(kept) and again.seed != request.seed
    assert (await store.get_job(rerolled.id)).params.init_result == parent.id
    reposted = await service.repost(RecordingOrigin(), job.id)
    assert engine.item(reposted.id).request == request
    assert (await store.get_job(reposted.id)).mode == "vary"  # a re-post is a vary again, not a V1-V4


async def test_vary_runs_at_least_one_step_with_few_final_steps(store, engine, inputs):
    service = make_service(store, engine, inputs=inputs)
    engine.offer = dataclasses.replace(engine.offer, final_steps=2)
    try:
        parent = await final_done(service, store, engine)
        job = await service.vary(RecordingOrigin(), parent.id, "vary_subtle")
        request = engine.item(job.id).request
        assert request.steps is not None and int(request.steps * request.strength) >= 1
    finally:
        await service.shutdown(0.0)


async def test_vary_refusals(service, store, engine, inputs):
    drafts = await service.imagine(RecordingOrigin(), prompt="a cat")
    origin = RecordingOrigin()
    assert await service.vary(origin, drafts.id, "vary_strong") is None
    assert "Vary buttons work on finals" in origin.refusals[-1]
    parent = await final_done(service, store, engine)
    assert await service.vary(origin, parent.id, "vary_wild") is None
    assert "Unknown variation" in origin.refusals[-1]
    (inputs.results / f"{parent.id}.png").unlink()
    assert await service.vary(origin, parent.id, "vary_subtle") is None
    assert "no longer stored" in origin.refusals[-1]


async def test_an_edit_strength_too_small_for_one_step_is_refused_up_front(service, engine):
    origin = RecordingOrigin()  # the fake engine makes finals in 4 steps: 0.2 x 4 runs none
    assert await service.edit(origin, prompt="x", image=png(512, 512), region=(0, 0, 50, 50), strength=0.2) is None
    assert "Strength 0.2 is too small" in origin.refusals[0] and "at least 0.25" in origin.refusals[0]
    assert engine.submitted == []
    assert await service.edit(RecordingOrigin(), prompt="x", image=png(512, 512), region=(0, 0, 50, 50), strength=0.25)


async def test_uploads_of_a_member_over_the_limit_are_not_stored(service, store, inputs):
    await store.update_guild_settings(10, max_waiting_per_user=1)
    service.guilds.forget()
    assert await service.imagine(RecordingOrigin(), prompt="a", image=png(512, 512, (1, 2, 3))) is not None
    stored = sorted(inputs.inputs.iterdir())
    for shade in range(5):
        origin = RecordingOrigin()
        assert await service.imagine(origin, prompt="b", image=png(512, 512, (shade, 9, 9))) is None
        assert "1 job waiting" in origin.refusals[0]
    assert sorted(inputs.inputs.iterdir()) == stored and len(stored) == 1


async def test_stored_images_past_the_cap_are_pruned_and_a_pruned_final_says_so(store, engine, inputs):
    service = make_service(store, engine, inputs=inputs)
    try:
        old = await final_done(service, store, engine)
        waiting = await service.imagine(RecordingOrigin(user_id=5), prompt="a", image=png(512, 512, (9, 9, 9)))
        for path in [*inputs.results.iterdir(), *inputs.inputs.iterdir()]:
            os.utime(path, (1, 1))  # stored long ago
        service.settings = service.settings.model_copy(update={"image_retention_days": 1.0, "image_store_max_mb": 0})
        removed, _ = await service.prune_images()
        assert removed == 1 and inputs.result_sync(old.id) is None
        assert inputs.get_sync(waiting.params.init_image)  # a job still to run keeps its image
        origin = RecordingOrigin()
        assert await service.vary(origin, old.id, "vary_subtle") is None
        assert origin.refusals == [f"The image of job #{old.id} is no longer stored, so I can't vary it."]
        assert await service.outpaint(RecordingOrigin(), old.id, "zoom2") is None
    finally:
        await service.shutdown(0.0)


def test_the_disk_cap_removes_the_oldest_first(inputs):
    for n in range(4):
        inputs.put_result_sync(n + 1, bytes(1000))
        os.utime(inputs.results / f"{n + 1}.png", (1000 + n, 1000 + n))
    removed, freed = inputs.prune_sync(max_age_s=None, max_bytes=2500, keep=set(), now=5000)
    assert (removed, freed) == (2, 2000)
    assert [inputs.result_sync(n) is not None for n in (1, 2, 3, 4)] == [False, False, True, True]
