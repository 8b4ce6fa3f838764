"""Parameters typed after the prompt, as the request builders take them: merged, checked, recorded;
the add-on picks typed there (--lora, --iw, --sref) as the add-on check takes them."""

from __future__ import annotations

import pytest

from core.history import JobParams
from core.jobs import plans
from core.jobs.addons import NO_LORAS, Addons, CheckedAddons, checked
from core.jobs.craft import Ask, Craft, for_drafts, for_final, read_prompt
from core.jobs.preferences import Applied
from core.jobs.rows import request_for
from core.limits import Refusal
from engine.api import DraftInit, EngineOffer
from tests.core.doubles import addon_offer, plain_offer, png
from tests.core.records import job_record as job_row

OFFER = EngineOffer()


def test_the_text_fills_the_options_and_slash_options_win():
    [ask] = read_prompt("a fox --ar 16:9 --seed 5 --no trees, people --chaos 30 --tile", 4)
    assert ask == Ask(prompt="a fox", negative_prompt="trees, people", aspect="16:9", seed=5, chaos=30, tile=True)
    [ask] = read_prompt("a fox --ar 16:9 --seed 5 --no trees", 4, aspect="1:1", seed=9, negative_prompt="blur")
    assert (ask.prompt, ask.aspect, ask.seed, ask.negative_prompt) == ("a fox", "1:1", 9, "blur")


def test_a_text_without_parameters_goes_on_as_typed():
    assert [a.prompt for a in read_prompt("  a fox  ", 4)] == ["  a fox  "]


def test_permutations_make_one_ask_each_and_may_choose_parameters():
    asks = read_prompt("a {red, blue} car --ar {1:1, 16:9}", 4)
    assert [(a.prompt, a.aspect) for a in asks] == [
        ("a red car", "1:1"), ("a red car", "16:9"), ("a blue car", "1:1"), ("a blue car", "16:9"),
    ]
    with pytest.raises(Refusal, match="makes 6 combinations; the most I make at once is 4"):
        read_prompt("a {red, blue, green} car {a, b}", 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a fox --size 3", "--size"),
        ("a fox --chaos 101", "--chaos must be 0 to 100"),
        ("a fox --ar 5:4", "--ar “5:4”"),
        ("a fox --model dalle", "--model “dalle”"),
    ],
)
def test_unknown_or_out_of_range_parameters_are_named(text, expected):
    with pytest.raises(Refusal, match=expected):
        read_prompt(text, 4)


def test_draft_steps_stay_in_turbos_range_and_finals_refuse_chaos():
    assert for_drafts(Ask("x", steps=3, model="sdxl"), "ssd-1b") == Craft(steps=3, final_model="sdxl")
    with pytest.raises(Refusal, match="--steps for drafts is 1 to 4"):
        for_drafts(Ask("x", steps=30), "ssd-1b")
    assert for_final(Ask("x", steps=30, tile=True)) == Craft(steps=30, tile=True)
    with pytest.raises(Refusal, match="--chaos"):
        for_final(Ask("x", chaos=10))


def test_drafts_with_chaos_tile_and_steps_are_recorded_and_rebuilt_from_the_row():
    craft = Craft(steps=3, chaos=40, tile=True, final_model="sdxl")
    plan = plans.imagine(Applied("a fox"), OFFER, draft_size=512, seed=7, craft=craft)
    request = plan.request
    assert (request.steps, request.chaos, request.tile) == (3, 40, True)
    params = plan.fields["params"]
    assert (params.chaos, params.tile, params.final_model) == (40, True, "sdxl")
    assert plan.fields["steps"] == 3
    row = job_row(**{k: v for k, v in plan.fields.items() if k != "mode"}, mode="imagine")
    assert request_for(row) == request


def test_an_image_draft_refuses_steps_that_run_no_step():
    with pytest.raises(Refusal, match="--steps 1 with strength 0.6"):
        plans.imagine(Applied("a fox"), OFFER, draft_size=512, image=png(64, 64), craft=Craft(steps=1))


def test_a_tiled_final_with_steps():
    plan = plans.final(Applied("bricks"), OFFER, final_size=1024, seed=3, craft=Craft(steps=30, tile=True))
    assert (plan.request.steps, plan.request.tile) == (30, True)
    assert plan.fields["params"] == JobParams(aspect="1:1", tile=True)
    assert plan.fields["steps"] == 30


def test_upscale_and_variation_of_a_chaos_draft_repeat_its_seeds_tile_and_model():
    draft = plans.imagine(Applied("a fox"), OFFER, draft_size=512, seed=7, craft=Craft(chaos=50, tile=True,
                                                                                       final_model="sdxl"))
    parent = job_row(id=3, **{k: v for k, v in draft.fields.items() if k != "mode"}, mode="imagine")
    request = request_for(parent)
    assert request.seeds[2] != 9  # chaos spreads the seeds
    preferred = Applied(model="ssd-1b", used=("final_model",))
    final = plans.final_of_draft(parent, request, 2, preferred, OFFER, draft_size=512, final_size=1024)
    assert (final.request.seed, final.request.tile, final.request.model) == (request.seeds[2], True, "sdxl")
    assert final.fields["params"].tile is True and final.fields["params"].prefs == ()
    variation = plans.variation(parent, request, 1)
    assert (variation.request.chaos, variation.request.tile) == (50, True)
    assert variation.request.init == DraftInit(request, 1)


# --------------------------------------------------------------------------- the add-ons typed in the prompt

REFERENCE = png(96, 80)


def picked(text: str, addons: Addons | None = None) -> CheckedAddons:
    [ask] = read_prompt(text, 4, addons=addons)
    return checked(ask.addons, addon_offer())


def test_typed_loras_and_reference_picks_reach_the_addons():
    assert picked("a fox --lora tiny-ink:0.8, tiny-glow").loras == (("tiny-ink", 0.8), ("tiny-glow", 1.0))
    on_image = picked("a fox --iw 1.5 --sref", Addons(reference=REFERENCE))
    assert (on_image.reference, on_image.reference_weight, on_image.reference_mode) == (REFERENCE, 1.5, "style")
    assert picked("a fox", Addons(reference=REFERENCE)).reference_mode == "full"
    [ask] = read_prompt("a fox --lora tiny-ink --iw 1", 4, addons=Addons(reference=REFERENCE))
    assert ask.prompt == "a fox"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a fox --lora tiny-ink:2.5", "--lora weight 2.5 is out of range: use -2 to 2."),
        ("a fox --lora tiny-ink:-3", "--lora weight -3 is out of range: use -2 to 2."),
        ("a fox --lora made-up", "There is no LoRA “made-up” on this bot (--lora); its LoRAs are tiny-ink, tiny-glow,"),
        ("a fox --lora tiny-ink, tiny-ink:0.5", "LoRA “tiny-ink” is given twice"),
        ("a fox --lora tiny-ink, tiny-glow, ink-wash", "At most 2 LoRAs can be stacked."),
        ("a fox --iw 1", "--iw only matters with a reference image: attach one, or leave --iw out."),
        ("a fox --sref", "--sref only matters with a reference image: attach one, or leave --sref out."),
    ],
)
def test_bad_typed_picks_are_refused_naming_the_parameter(text, expected):
    with pytest.raises(Refusal) as caught:
        picked(text)
    assert str(caught.value).startswith(expected)


def test_a_typed_lora_whose_name_holds_a_colon_is_picked_and_a_bad_weight_is_named():
    offer = addon_offer(loras=("tiny-ink", "style:v2"))
    [ask] = read_prompt("a fox --lora style:v2, tiny-ink:0.5", 4)
    assert checked(ask.addons, offer).loras == (("style:v2", 1.0), ("tiny-ink", 0.5))
    [ask] = read_prompt("a fox --lora tiny-ink:strong", 4)
    with pytest.raises(Refusal) as caught:
        checked(ask.addons, offer)
    assert str(caught.value).startswith(
        "There is no LoRA “tiny-ink:strong” on this bot (--lora; a weight after “:” is a number, e.g. tiny-ink:0.8)"
    )


def test_an_out_of_range_reference_weight_names_iw():
    with pytest.raises(Refusal, match=r"^--iw 2.5 is out of range: use 0 to 2\.$"):
        picked("a fox --iw 2.5", Addons(reference=REFERENCE))


def test_typed_picks_need_the_addon_on_this_bot():
    [ask] = read_prompt("a fox --lora tiny-ink", 4)
    with pytest.raises(Refusal, match=f"^{NO_LORAS}$"):
        checked(ask.addons, plain_offer())


def test_slash_options_win_over_typed_picks():
    options = Addons.from_options(lora="tiny-glow", lora_weight=-1, reference=REFERENCE, reference_weight=0.2,
                                  reference_mode="full")
    chosen = picked("a fox --lora tiny-ink:0.8 --iw 1.5 --sref", options)
    assert (chosen.loras, chosen.reference_weight, chosen.reference_mode) == ((("tiny-glow", -1.0),), 0.2, "full")
    # an option left out leaves the typed pick: here only the weight is the option's
    chosen = picked("a fox --lora tiny-ink --iw 1.5 --sref", Addons(reference=REFERENCE, reference_weight=0.3))
    assert (chosen.loras, chosen.reference_weight, chosen.reference_mode) == ((("tiny-ink", 1.0),), 0.3, "style")
    # a refusal of the option's pick names the option, not the text's parameter
    with pytest.raises(Refusal, match="^reference_weight 3 is out of range"):
        picked("a fox --iw 1", Addons(reference=REFERENCE, reference_weight=3))


def test_each_permutation_gets_its_own_typed_lora():
    asks = read_prompt("a fox --lora {tiny-ink, tiny-glow}", 4)
    assert [checked(a.addons, addon_offer()).loras for a in asks] == [(("tiny-ink", 1.0),), (("tiny-glow", 1.0),)]
