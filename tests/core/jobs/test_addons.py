"""LoRAs and the image reference through the job service: checked against the offer, recorded in the row,
repeated by 🔁, U, V and re-post (rebuilt from the row and the stored reference)."""

from __future__ import annotations

import dataclasses

import pytest

from core.jobs.addons import NO_LORAS, NO_REFERENCE, Addons, checked
from core.jobs.rows import rebuild_request
from engine.api import DraftRequest, FinalRequest
from tests.core.doubles import FAKE_LORAS, RecordingOrigin, addon_offer, plain_offer, png
from tests.core.jobs.support import wait_status

REFERENCE = png(96, 80, (20, 200, 90))


async def done(store, engine, job):
    engine.finish(job.id)
    return await wait_status(store, job.id, "done")


# --------------------------------------------------------------------------- the checks (pure)


@pytest.mark.parametrize(
    ("addons", "expected"),
    [
        (Addons.from_options(lora="nope"), "There is no LoRA “nope” on this bot: pick one of the list in lora."),
        (Addons.from_options(lora="tiny-ink", lora2="missing"), "There is no LoRA “missing”"),
        (Addons.from_options(lora_weight=0.5), "lora_weight only matters with a LoRA: pick one in lora"),
        (Addons.from_options(lora="tiny-ink", lora2_weight=1.0), "lora2_weight only matters with a LoRA"),
        (Addons.from_options(lora="tiny-ink", lora_weight=2.5), "lora_weight 2.5 is out of range: use -2 to 2."),
        (Addons.from_options(lora="tiny-ink", lora2="tiny-ink"), "LoRA “tiny-ink” is given twice"),
        (Addons.from_options(reference_weight=1.0), "reference_weight only matters with a reference image"),
        (Addons.from_options(reference_mode="style"), "reference_mode only matters with a reference image"),
        (Addons.from_options(reference=REFERENCE, reference_weight=3), "reference_weight 3 is out of range"),
        (Addons.from_options(reference=REFERENCE, reference_mode="pose"), "reference_mode “pose” is unknown"),
    ],
)
def test_bad_picks_are_refused_naming_the_option(addons, expected):
    with pytest.raises(Exception) as caught:
        checked(addons, addon_offer())
    assert str(caught.value).startswith(expected)


def test_what_the_engine_lacks_is_refused_in_one_line():
    with pytest.raises(Exception, match=f"^{NO_LORAS}$"):
        checked(Addons.from_options(lora="tiny-ink"), plain_offer())
    with pytest.raises(Exception, match=f"^{NO_REFERENCE}$"):
        checked(Addons.from_options(reference=REFERENCE), plain_offer(loras=FAKE_LORAS))


def test_defaults_of_the_weights_and_mode():
    picked = checked(Addons.from_options(lora="tiny-glow", lora2="tiny-ink", lora2_weight=-0.5, reference=REFERENCE),
                     addon_offer())
    assert picked.loras == (("tiny-glow", 1.0), ("tiny-ink", -0.5))
    assert (picked.reference, picked.reference_weight, picked.reference_mode) == (REFERENCE, 0.5, "full")


# --------------------------------------------------------------------------- the service


async def test_imagine_with_loras_and_a_reference_records_them_and_passes_them_on(service, store, engine, inputs):
    addons = Addons.from_options(
        lora="tiny-ink", lora_weight=0.8, lora2="tiny-glow", reference=REFERENCE, reference_weight=1.2,
        reference_mode="style",
    )
    job = await service.imagine(RecordingOrigin(), prompt="a fox", seed=7, addons=addons)
    request = engine.item(job.id).request
    assert isinstance(request, DraftRequest)
    assert request.loras == (("tiny-ink", 0.8), ("tiny-glow", 1.0))
    assert (request.reference, request.reference_weight, request.reference_mode) == (REFERENCE, 1.2, "style")
    row = await store.get_job(job.id)
    assert row.params.loras == (("tiny-ink", 0.8), ("tiny-glow", 1.0))
    assert (row.params.reference_weight, row.params.reference_mode) == (1.2, "style")
    assert await inputs.get(row.params.reference_image) == REFERENCE
    assert await rebuild_request(store, row, inputs) == request  # a restart submits the same request


async def test_final_takes_the_addons_too(service, store, engine):
    job = await service.final(
        RecordingOrigin(), prompt="a fox", addons=Addons.from_options(lora="ink-wash", reference=REFERENCE)
    )
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest)
    assert (request.loras, request.reference, request.reference_mode) == ((("ink-wash", 1.0),), REFERENCE, "full")


async def test_an_unknown_lora_is_refused_and_nothing_is_stored(service, store, engine):
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="a fox", addons=Addons.from_options(lora="nope")) is None
    assert origin.refusals == ["There is no LoRA “nope” on this bot: pick one of the list in lora."]
    assert engine.submitted == [] and await store.get_job(1) is None


async def test_without_the_addon_the_pick_is_refused(store, inputs, tmp_path):
    from tests.core.doubles import FakeEngine
    from tests.core.jobs.support import make_service

    bare = FakeEngine(str(tmp_path / "history.sqlite3"), offer=plain_offer())
    service = make_service(store, bare, inputs=inputs)
    origin = RecordingOrigin()
    await service.imagine(origin, prompt="a fox", addons=Addons.from_options(lora="tiny-ink"))
    await service.final(origin, prompt="a fox", addons=Addons.from_options(reference=REFERENCE))
    assert origin.refusals == [NO_LORAS, NO_REFERENCE] and bare.submitted == []
    await service.shutdown(0.0)


async def test_reroll_u_v_and_repost_repeat_the_loras_and_the_reference(service, store, engine, inputs):
    addons = Addons.from_options(lora="tiny-ink", lora_weight=0.6, reference=REFERENCE, reference_mode="style")
    draft = await done(store, engine, await service.imagine(RecordingOrigin(), prompt="a fox", addons=addons))
    draft_request = engine.item(draft.id).request
    wanted = ((("tiny-ink", 0.6),), REFERENCE, 0.5, "style")

    def craft(request):
        return (request.loras, request.reference, request.reference_weight, request.reference_mode)

    reroll = await service.reroll(RecordingOrigin(), draft.id)
    assert craft(engine.item(reroll.id).request) == wanted
    assert dataclasses.replace(engine.item(reroll.id).request, seed=draft_request.seed) == draft_request

    final = await service.final_of_draft(RecordingOrigin(), draft.id, 2)
    upscaled = engine.item(final.id).request
    assert isinstance(upscaled, FinalRequest) and craft(upscaled) == wanted
    assert upscaled.init.draft == draft_request  # the draft is remade with its LoRA and reference too
    final_row = await store.get_job(final.id)
    assert final_row.params.loras == (("tiny-ink", 0.6),) and final_row.params.reference_image == (
        draft.params.reference_image
    )
    assert await rebuild_request(store, final_row, inputs) == upscaled

    variation = await service.variation(RecordingOrigin(), draft.id, 0)
    assert craft(engine.item(variation.id).request) == wanted

    repost = await service.repost(RecordingOrigin(), draft.id)
    assert engine.item(repost.id).request == draft_request
    # Stored once: every copy names the same stored reference.
    keys = {(await store.get_job(job.id)).params.reference_image for job in (reroll, final, variation, repost)}
    assert keys == {draft.params.reference_image}


async def test_vary_and_zoom_of_a_final_keep_its_loras_and_reference(service, store, engine, inputs):
    addons = Addons.from_options(lora="watercolor-xl", lora_weight=1.5, reference=REFERENCE)
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a fox", addons=addons))
    assert await inputs.result(final.id) is not None  # its image: the source of vary and zoom
    wanted = ((("watercolor-xl", 1.5),), REFERENCE, 0.5, "full")
    for job in (await service.vary(RecordingOrigin(), final.id, "vary_subtle"),
                await service.outpaint(RecordingOrigin(), final.id, "zoom2")):
        request = engine.item(job.id).request
        assert (request.loras, request.reference, request.reference_weight, request.reference_mode) == wanted
        assert (await store.get_job(job.id)).params.reference_image == final.params.reference_image
    plain = await done(store, engine, await service.final(RecordingOrigin(), prompt="a fox"))
    varied = await service.vary(RecordingOrigin(), plain.id, "vary_strong")
    assert engine.item(varied.id).request.loras == () and varied.params.reference_image is None


async def test_vary_and_zoom_of_an_upscaled_final_keep_the_loras_and_reference_of_the_final_it_enlarged(
    service, store, engine, inputs
):
    addons = Addons.from_options(lora="watercolor-xl", lora_weight=1.5, reference=REFERENCE)
    final = await done(store, engine, await service.final(RecordingOrigin(), prompt="a fox", addons=addons))
    upscaled = await done(store, engine, await service.upscale_2x(RecordingOrigin(), final.id, "upscale_subtle"))
    assert engine.item(upscaled.id).request.mode == "subtle"  # the upscale itself takes no add-ons
    for job in (await service.vary(RecordingOrigin(), upscaled.id, "vary_subtle"),
                await service.outpaint(RecordingOrigin(), upscaled.id, "zoom2")):
        request = engine.item(job.id).request
        assert (request.loras, request.reference_weight, request.reference_mode) == ((("watercolor-xl", 1.5),), 0.5,
                                                                                     "full")
        assert (await store.get_job(job.id)).params.reference_image == final.params.reference_image
