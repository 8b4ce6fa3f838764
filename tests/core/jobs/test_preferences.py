"""/prefer defaults: the style suffix, what fills an empty option (pure), what storing them checks."""

from __future__ import annotations

import pytest

from core.limits import MAX_STYLE_SUFFIX_CHARS, Refusal, check_style_suffix, with_style
from engine.api import MAX_PROMPT_CHARS


def test_style_suffix_is_cleaned_and_joined_with_a_comma():
    assert check_style_suffix(", watercolor ") == "watercolor"
    assert check_style_suffix("  ") is None and check_style_suffix(None) is None
    assert with_style("a fox", "watercolor") == "a fox, watercolor"
    assert with_style("a fox, ", "watercolor") == "a fox, watercolor"
    assert with_style("a fox, Watercolor", "watercolor") == "a fox, Watercolor"  # already there: not twice
    assert with_style("a fox", None) == "a fox"


def test_style_suffix_bounds():
    with pytest.raises(Refusal, match=f"limit is {MAX_STYLE_SUFFIX_CHARS}"):
        check_style_suffix("x" * (MAX_STYLE_SUFFIX_CHARS + 1))
    fits = "p" * (MAX_PROMPT_CHARS - len(", watercolor"))
    assert len(with_style(fits, "watercolor")) == MAX_PROMPT_CHARS
    with pytest.raises(Refusal, match="with your style suffix .* 1,001 characters.*/prefer reset"):
        with_style(fits + "p", "watercolor")


async def test_update_prefs_checks_each_value_and_stores_nothing_on_a_refusal(service, store):
    prefs = await service.update_prefs(
        1, aspect="16:9", negative_prompt=" blurry ", style_suffix=", ink", final_model="SDXL", dm_results=True
    )
    assert (prefs.aspect, prefs.negative_prompt, prefs.style_suffix, prefs.final_model, prefs.dm_results) == (
        "16:9",
        "blurry",
        "ink",
        "sdxl",
        True,
    )
    with pytest.raises(Refusal, match="Unknown aspect ratio '5:1'"):
        await service.update_prefs(1, aspect="5:1", style_suffix="oil")
    with pytest.raises(Refusal, match="Unknown model 'dall-e'"):
        await service.update_prefs(1, final_model="dall-e")
    with pytest.raises(Refusal, match="limit is 200"):
        await service.update_prefs(1, style_suffix="y" * 201)
    assert (await store.user_prefs(1)).style_suffix == "ink"  # the refused call changed nothing
    reset = await service.update_prefs(1, aspect=None, negative_prompt=None, dm_results=None)
    assert (reset.aspect, reset.negative_prompt, reset.dm_results, reset.style_suffix) == (None, None, False, "ink")
