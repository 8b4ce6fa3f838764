"""/prefer defaults: the style suffix, what fills an empty option (pure), what storing them checks."""

from __future__ import annotations

import pytest

from core.history import JobParams, UserPrefs
from core.jobs.preferences import Applied, apply_prefs, checked_pref_changes
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
    prefs = await service.prefs.update(
        1, aspect="16:9", negative_prompt=" blurry ", style_suffix=", ink", final_model="SDXL", dm_results=True
    )
    assert (prefs.aspect, prefs.negative_prompt, prefs.style_suffix, prefs.final_model, prefs.dm_results) == (
        "16:9",
        "blurry",
        "ink",
        "sdxl",
        True,
    )
    with pytest.raises(Refusal, match="Unknown aspect ratio “5:1”"):
        await service.prefs.update(1, aspect="5:1", style_suffix="oil")
    with pytest.raises(Refusal, match="Unknown model “dall-e”"):
        await service.prefs.update(1, final_model="dall-e")
    with pytest.raises(Refusal, match="limit is 200"):
        await service.prefs.update(1, style_suffix="y" * 201)
    assert (await store.user_prefs(1)).style_suffix == "ink"  # the refused call changed nothing
    reset = await service.prefs.update(1, aspect=None, negative_prompt=None, dm_results=None)
    assert (reset.aspect, reset.negative_prompt, reset.dm_results, reset.style_suffix) == (None, None, False, "ink")


# --------------------------------------------------------------------------- applying them (pure)


def prefs(**changes) -> UserPrefs:
    return UserPrefs(user_id=1, **changes)


def test_defaults_fill_only_what_was_left_empty_and_say_which():
    mine = prefs(aspect="16:9", negative_prompt="blurry", style_suffix="watercolor", final_model="sdxl")
    every = ("style_suffix", "negative_prompt", "aspect", "final_model")
    asked = apply_prefs(mine, every, prompt="a fox")
    used = ("aspect", "final_model", "negative_prompt", "style_suffix")
    assert asked == Applied("a fox, watercolor", "blurry", "16:9", "sdxl", used)
    assert asked.noted(JobParams(aspect="16:9")) == JobParams(aspect="16:9", prefs=tuple(sorted(used)))
    given = apply_prefs(mine, every, prompt="a fox", negative_prompt="dogs", aspect="1:1", model="ssd-1b")
    assert (given.negative_prompt, given.aspect, given.model) == ("dogs", "1:1", "ssd-1b")
    assert given.used == ("style_suffix",)


def test_only_the_named_defaults_are_used():
    mine = prefs(aspect="16:9", negative_prompt="blurry", style_suffix="watercolor", final_model="sdxl")
    asked = apply_prefs(mine, ("final_model",), prompt="a fox")
    assert asked == Applied("a fox", "", None, "sdxl", ("final_model",))
    nothing = apply_prefs(prefs(), ("style_suffix", "aspect"), prompt="a fox")
    assert nothing.noted(JobParams(aspect="1:1")) == JobParams(aspect="1:1")


def test_a_default_this_bot_no_longer_offers_is_left_out():
    asked = apply_prefs(prefs(aspect="5:1", final_model="dall-e"), ("aspect", "final_model"), prompt="x")
    assert (asked.aspect, asked.model, asked.used) == (None, None, ())


def test_the_style_suffix_is_held_to_the_servers_blocked_words():
    mine = prefs(style_suffix="gore")
    with pytest.raises(Refusal, match="gore"):
        apply_prefs(mine, ("style_suffix",), prompt="a fox", blocked_words=("gore",))
    asked = apply_prefs(mine, ("style_suffix",), prompt="a fox", blocked_words=("gore",), age_restricted=True)
    assert asked.prompt == "a fox, gore"


def test_checked_pref_changes_name_what_is_wrong():
    assert checked_pref_changes({"aspect": "16:9", "final_model": " SDXL "}, "ssd-1b") == {
        "aspect": "16:9",
        "final_model": "sdxl",
    }
    with pytest.raises(Refusal, match="no preference called “colour”"):
        checked_pref_changes({"colour": "red"}, "ssd-1b")
    with pytest.raises(Refusal, match="on or off"):
        checked_pref_changes({"dm_results": "yes"}, "ssd-1b")
