"""Prompt-craft request fields (tile, LoRAs, reference, chaos) and the upscale and describe requests: validation,
seeds, batch keys and the PNG ``parameters`` chunk. Torch-free."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.api import DescribeRequest, DraftRequest, FinalRequest, ImageInit, RequestError, UpscaleRequest
from engine.output import parameters_text
from engine.requests import CHAOS_SEED_STRIDE, MAX_SEED


def png(width: int = 64, height: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_defaults_keep_todays_requests():
    draft = DraftRequest("a fox", seed=5)
    assert (draft.tile, draft.loras, draft.reference, draft.chaos) == (False, (), None, 0)
    assert draft.seeds == (5, 6, 7, 8)
    assert draft.batch_key() == ("turbo", 512, 512, 1, True, False, (), ())
    final = FinalRequest("a fox", seed=5)
    assert (final.tile, final.loras, final.reference, final.reference_mode) == (False, (), None, "full")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loras": (("a", 1.0), ("b", 1.0), ("c", 1.0))}, "At most 2 LoRAs"),
        ({"loras": (("a", 2.5),)}, "LoRA weight 2.5 for 'a' is out of range"),
        ({"loras": (("a", 1.0), ("a", 0.5))}, "given twice"),
        ({"loras": (("  ", 1.0),)}, "LoRA name is empty"),
        ({"reference": b"not an image"}, "reference image is not an image"),
        ({"reference": png(), "reference_weight": 3.0}, "Reference weight 3 is out of range"),
        ({"reference": png(), "reference_mode": "subject"}, "Unknown reference mode 'subject'"),
        ({"tile": "yes"}, "tile must be true or false"),
    ],
)
def test_bad_craft_fields_are_refused_with_words_for_users(changes, message):
    for request in (DraftRequest("a fox", seed=1, **changes), FinalRequest("a fox", seed=1, **changes)):
        with pytest.raises(RequestError, match=message):
            request.validate()


@pytest.mark.parametrize("chaos", [-1, 101, 2.5])
def test_chaos_is_a_whole_number_from_0_to_100(chaos):
    with pytest.raises(RequestError, match="Chaos must be a whole number from 0 to 100"):
        DraftRequest("a fox", seed=1, chaos=chaos).validate()


def test_loras_given_as_lists_become_tuples_and_the_batch_key_ignores_their_order():
    one = DraftRequest("a fox", seed=1, loras=[["ink", 1], ["glow", 0.5]])
    two = DraftRequest("a fox", seed=2, loras=(("glow", 0.5), ("ink", 1.0)))
    assert one.loras == (("ink", 1.0), ("glow", 0.5))
    assert one.validate().batch_key() == two.validate().batch_key()
    assert one.batch_key() != DraftRequest("a fox", seed=1, loras=(("ink", 0.9),)).batch_key()


def test_batch_key_separates_tile_and_reference():
    plain = DraftRequest("a fox", seed=1)
    reference = png()
    keys = {
        plain.batch_key(),
        DraftRequest("a fox", seed=1, tile=True).batch_key(),
        DraftRequest("a fox", seed=1, reference=reference).batch_key(),
        DraftRequest("a fox", seed=1, reference=reference, reference_weight=0.8).batch_key(),
        DraftRequest("a fox", seed=1, reference=reference, reference_mode="style").batch_key(),
        DraftRequest("a fox", seed=1, reference=png(32, 32)).batch_key(),
    }
    assert len(keys) == 6
    assert DraftRequest("b", seed=9, reference=reference).batch_key() == DraftRequest(
        "a", seed=1, reference=bytes(reference)
    ).batch_key()


def test_chaos_spreads_seeds_deterministically_and_seeds_stays_truthful():
    calm = DraftRequest("a fox", seed=10)
    wild = DraftRequest("a fox", seed=10, chaos=40)
    assert calm.seeds == (10, 11, 12, 13)
    assert wild.seeds == tuple(10 + i * 40 * CHAOS_SEED_STRIDE for i in range(4))
    assert wild.seeds == DraftRequest("a fox", seed=10, chaos=40).seeds
    assert DraftRequest("a fox", seed=10, chaos=41).seeds != wild.seeds
    top = DraftRequest("a fox", seed=MAX_SEED, chaos=100).validate()  # wraps round instead of overflowing
    assert all(0 <= s <= MAX_SEED for s in top.seeds) and len(set(top.seeds)) == 4


def test_chaos_jitters_image_to_image_strength_within_bounds():
    init = ImageInit(png())
    calm = DraftRequest("a fox", seed=3, init=init, steps=4, strength=0.5)
    wild = DraftRequest("a fox", seed=3, init=init, steps=4, strength=0.5, chaos=100)
    assert calm.strengths == (0.5,) * 4
    assert len(set(wild.strengths)) == 4
    assert all(0.25 <= s <= 0.75 and s * 4 >= 1 for s in wild.strengths)
    assert wild.strengths == DraftRequest("a fox", seed=3, init=init, steps=4, strength=0.5, chaos=100).strengths
    mild = DraftRequest("a fox", seed=3, init=init, steps=4, strength=0.5, chaos=10).strengths
    assert max(abs(s - 0.5) for s in mild) <= 0.025 + 1e-9


def test_parameters_chunk_records_tile_loras_reference_and_chaos():
    text = parameters_text(
        prompt="a fox", negative_prompt="", steps=1, guidance=0, seed=1, width=512, height=512, model="turbo",
        tile=True, loras=(("ink", 0.8), ("glow", -1.0)), reference="style 0.6", chaos=30,
    )
    assert text.splitlines()[-1].endswith(
        "Model: sdxl-turbo, Tiling: True, Lora: ink:0.8, Lora: glow:-1, IP-Adapter: style 0.6, Chaos: 30"
    )
    plain = parameters_text(prompt="a fox", negative_prompt="", steps=1, guidance=0, seed=1, width=512, height=512,
                            model="turbo")
    assert "Tiling" not in plain and "Lora" not in plain and "Chaos" not in plain


def test_upscale_request_validation():
    assert UpscaleRequest(png()).validate().count == 1
    with pytest.raises(RequestError, match="Unknown upscale mode 'huge'"):
        UpscaleRequest(png(), mode="huge").validate()
    with pytest.raises(RequestError, match="image to upscale is not an image"):
        UpscaleRequest(b"nope").validate()
    with pytest.raises(RequestError, match="upscale takes images up to 2048 px"):
        UpscaleRequest(png(2112, 64)).validate()
    with pytest.raises(RequestError, match="Unknown final model"):
        UpscaleRequest(png(), model="dalle").validate()


def test_describe_request_validation():
    assert DescribeRequest(png()).validate().count == 4
    with pytest.raises(RequestError, match="image to describe is empty"):
        DescribeRequest(b"").validate()
    with pytest.raises(RequestError, match="3 or 4 suggestions"):
        DescribeRequest(png(), count=6).validate()
