"""The pure builders: a command's options and the user's defaults in, a request and its row's fields out."""

from __future__ import annotations

import pytest

from core.history import JobParams
from core.jobs import plans
from core.jobs.preferences import Applied
from core.jobs.rows import request_for
from core.limits import Refusal
from engine.api import ASPECTS, DraftInit, DraftRequest, EngineOffer, FinalRequest, ImageInit, UpscaleRequest
from tests.core.doubles import png
from tests.core.records import job_record as job_row

OFFER = EngineOffer()


def test_imagine_plans_four_drafts_at_the_asked_aspect_and_notes_the_defaults_used():
    plan = plans.imagine(Applied("a fox", "blur", "16:9", None, ("aspect",)), OFFER, draft_size=512, seed=7)
    assert plan.request == DraftRequest(
        prompt="a fox", seed=7, negative_prompt="blur", width=704, height=384, count=4, steps=OFFER.draft_steps
    )
    assert plan.keep == {}
    assert plan.fields["mode"] == "imagine" and plan.fields["strength"] is None
    assert plan.fields["params"] == JobParams(aspect="16:9", prefs=("aspect",))


def test_imagine_with_an_image_keeps_its_aspect_and_the_image_to_store():
    photo = png(800, 600)
    plan = plans.imagine(Applied("a fox"), OFFER, draft_size=512, seed=1, image=photo, strength=0.5)
    assert isinstance(plan.request, DraftRequest) and plan.request.init == ImageInit(photo)
    assert (plan.request.width, plan.request.height) == (576, 448) and plan.request.steps == 2
    assert plan.keep == {"init_image": photo}
    assert (plan.fields["mode"], plan.fields["strength"], plan.fields["params"]) == ("img2img", 0.5, JobParams())


def test_final_checks_the_model_and_takes_the_default():
    assert plans.final(Applied("x"), OFFER, final_size=1024, seed=1).request.model == OFFER.default_final_model
    with pytest.raises(Refusal, match="Unknown model “dall-e”"):
        plans.final(Applied("x", model="dall-e"), OFFER, final_size=1024)


def test_edit_with_a_region_plans_a_mask_of_the_jobs_size():
    plan = plans.edit(Applied("a hat"), OFFER, final_size=1024, image=png(1024, 768), region=(0, 0, 50, 50), seed=2)
    assert isinstance(plan.request, FinalRequest) and plan.request.mask is not None
    assert plan.keep == {"init_image": png(1024, 768), "mask_image": plan.request.mask}
    assert plan.fields["params"] == JobParams(region=(0, 0, 50, 50)) and plan.fields["mode"] == "inpaint"


def test_upscale_and_variation_start_from_the_parents_image():
    parent = job_row(id=3, status="done", params=JobParams(aspect="3:2"))
    parent_request = request_for(parent)
    assert isinstance(parent_request, DraftRequest)
    up = plans.final_of_draft(parent, parent_request, 1, Applied(model="sdxl", used=("final_model",)), OFFER,
                       draft_size=512, final_size=1024)
    assert up.request.init == DraftInit(parent_request, 1) and up.request.seed == parent_request.seeds[1]
    assert (up.request.width, up.request.height, up.request.model) == (1280, 832, "sdxl")
    assert (up.fields["parent_id"], up.fields["parent_index"], up.fields["params"]) == (
        3, 1, JobParams(aspect="3:2", prefs=("final_model",))
    )
    var = plans.variation(parent, parent_request, 2)
    assert var.request.init == DraftInit(parent_request, 2) and var.fields["mode"] == "variation"
    assert (var.request.steps, var.request.strength) == (plans.VARIATION_STEPS, plans.VARIATION_STRENGTH)


def test_an_upscale_of_a_draft_with_no_known_aspect_scales_its_size():
    parent = job_row(id=3, width=512, height=768, params=JobParams())
    up = plans.final_of_draft(parent, request_for(parent), 0, Applied(), OFFER, draft_size=512, final_size=1024)
    assert (up.request.width, up.request.height) == (1024, 1536) and up.fields["params"] == JobParams()


def test_reroll_and_repost_describe_the_same_generation_as_the_row():
    row = job_row(id=8, mode="img2img", strength=0.4, params=JobParams(init_image="k", aspect="1:1"))
    rebuilt = request_for(row, images={"k": png(64, 64)})
    again = plans.repost(row, rebuilt)
    assert again.request == rebuilt
    same = {name: getattr(row, name) for name in ("kind", "mode", "prompt", "negative_prompt", "model", "width",
                                                   "height", "seed", "steps", "count", "strength", "parent_index")}
    assert {name: again.fields[name] for name in same} == same
    assert again.fields["params"] == JobParams(init_image="k", aspect="1:1", repost_of=8)
    reroll = plans.reroll(row, rebuilt)
    assert reroll.fields["mode"] == "reroll" and reroll.fields["parent_id"] == 8
    assert reroll.fields["seed"] == reroll.request.seed and reroll.fields["params"].reroll_of == 8


@pytest.mark.parametrize(("value", "message"), [(0.0, "out of range"), (1.5, "out of range"), (True, "a number")])
def test_strength_is_checked(value, message):
    with pytest.raises(Refusal, match=message):
        plans.check_strength(value, 0.6)
    assert plans.check_strength(None, 0.6) == 0.6


def test_scaled_sides_are_multiples_of_64_within_bounds():
    assert plans.scaled(512, 768, 2.0) == (1024, 1536)
    assert plans.scaled(100, 1500, 2.0) == (256, 2048)


def test_remix_keeps_the_seed_size_and_settings_with_the_new_text():
    row = job_row(id=8, kind="final", mode="final", model="sdxl", width=1216, height=832, steps=30, guidance=6.0,
                  count=1, seed=77, params=JobParams(aspect="3:2"))
    rebuilt = request_for(row)
    plan = plans.remix(row, rebuilt, "a blue fox", "")
    assert plan.request == FinalRequest(prompt="a blue fox", seed=77, negative_prompt="", width=1216, height=832,
                                        model="sdxl", steps=30, guidance=6.0)
    assert (plan.fields["kind"], plan.fields["mode"], plan.fields["parent_id"]) == ("final", "remix", 8)
    assert plan.fields["params"] == JobParams(aspect="3:2", remix_of=8) and plan.keep == {}


def test_a_remix_of_the_final_of_a_draft_keeps_starting_from_that_draft():
    draft = job_row(id=3, status="done")
    final = job_row(id=4, kind="final", mode="upscale", model="ssd-1b", count=1, strength=0.5, parent_id=3,
                    parent_index=2, seed=request_for(draft).seeds[2])
    rebuilt = request_for(final, request_for(draft))
    plan = plans.remix(final, rebuilt, "p, at night", "n")
    assert isinstance(plan.request, FinalRequest) and plan.request.init == DraftInit(request_for(draft), 2)
    assert (plan.fields["parent_id"], plan.fields["parent_index"]) == (3, 2)  # the chain a rebuild follows
    assert plan.fields["params"].remix_of == 4


def test_upscale2x_enlarges_the_finals_image_with_its_prompt_and_seed():
    final = job_row(id=5, kind="final", mode="final", model="sdxl", count=1, seed=21, negative_prompt="blur",
                    width=1024, height=768, params=JobParams(aspect="4:3"))
    source = png(1024, 768)
    plan = plans.upscale_2x(final, source, "upscale_creative")
    assert plan.request == UpscaleRequest(image=source, mode="creative", prompt="p", negative_prompt="blur",
                                          seed=21, model="sdxl")
    # The final's kept result is on disk already: the row names it, no copy is stored (🔁 and /show read it).
    assert plan.keep == {}
    fields = plan.fields
    assert (fields["kind"], fields["mode"], fields["parent_id"], fields["width"], fields["height"]) == (
        "final", "upscale2x", 5, 2048, 1536
    )
    assert fields["params"] == JobParams(upscale="creative", aspect="4:3", init_result=5)
    stored = job_row(id=6, **fields)
    assert request_for(stored, results={5: source}) == plan.request
    assert plans.reroll(stored, plan.request).request.image == source
    older = job_row(id=7, **{**fields, "params": JobParams(upscale="creative", aspect="4:3", init_image="k")})
    assert request_for(older, images={"k": source}) == plan.request  # rows from before init_result still rebuild


DRAFT_SIZES = range(256, 1024 + 1, 64)  # every DRAFT_SIZE the settings allow (core.settings)
FINAL_SIZES = range(512, 2048 + 1, 64)  # every FINAL_SIZE


def near(width: int, height: int, aspect: str) -> bool:
    """The job's sides keep the aspect asked for, within what snapping to 64 px sides costs at 256-384 px."""
    aw, ah = (int(n) for n in aspect.split(":"))
    return abs(width / height - aw / ah) <= 0.13 * aw / ah


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_every_allowed_draft_and_final_size_works_for_every_aspect(aspect):
    """DRAFT_SIZE=1024 with 16:9 once gave 1344 px drafts, which the engine refuses (drafts stop at 1024)."""
    for draft_size in DRAFT_SIZES:
        plan = plans.imagine(Applied("a fox", aspect=aspect), OFFER, draft_size=draft_size, seed=1)
        draft = plan.request
        assert isinstance(draft, DraftRequest)
        draft.validate()
        assert near(draft.width, draft.height, aspect), (draft_size, draft.width, draft.height)
        parent = job_row(id=3, status="done", width=draft.width, height=draft.height, params=JobParams(aspect=aspect))
        for final_size in (512, 1024, 2048):
            up = plans.final_of_draft(parent, request_for(parent), 0, Applied(), OFFER,
                               draft_size=draft_size, final_size=final_size)
            up.request.validate()
    for final_size in FINAL_SIZES:
        final = plans.final(Applied("a fox", aspect=aspect), OFFER, final_size=final_size, seed=1).request
        final.validate()
        assert near(final.width, final.height, aspect), (final_size, final.width, final.height)


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_every_allowed_size_works_for_an_image_of_every_aspect(aspect):
    """A 16:9 upload at DRAFT_SIZE=256 once came to 320x192 px, under the 256 px a side needs."""
    aw, ah = (int(n) for n in aspect.split(":"))
    photo = png(aw * 40, ah * 40)
    for draft_size in DRAFT_SIZES:
        draft = plans.imagine(Applied("a fox"), OFFER, draft_size=draft_size, seed=1, image=photo).request
        draft.validate()
        assert near(draft.width, draft.height, aspect), (draft_size, draft.width, draft.height)
        parent = job_row(id=3, status="done", mode="img2img", width=draft.width, height=draft.height)
        up = plans.final_of_draft(parent, draft, 0, Applied(), OFFER, draft_size=draft_size, final_size=2048)
        up.request.validate()
        shape = up.request.width / up.request.height  # the final is the draft's, larger: its shape, not a square
        assert abs(shape - draft.width / draft.height) <= 0.05 * shape, (draft_size, up.request.width)
    for final_size in FINAL_SIZES:
        edit = plans.edit(Applied("a hat"), OFFER, final_size=final_size, image=photo, region=(0, 0, 50, 50), seed=2)
        edit.request.validate()
        assert near(edit.request.width, edit.request.height, aspect)
