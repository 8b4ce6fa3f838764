"""Style presets (core/styles.py): names, the styles a server offers, the autocomplete filter, applying one."""

from __future__ import annotations

import pytest

from core.history import GuildStyle
from core.limits import Refusal
from core.prompt_text import MAX_STYLE_NAME_CHARS, split_parameters
from core.styles import (
    DEFAULT_STYLES,
    MAX_CHOICES,
    Style,
    apply_style,
    check_style_name,
    check_style_texts,
    choice_label,
    matching,
    server_styles,
    unknown_style,
)
from engine.api import MAX_PROMPT_CHARS

WATERCOLOR = next(s for s in DEFAULT_STYLES if s.name == "watercolor")


def test_the_defaults_are_a_handful_of_complete_styles():
    names = [s.name for s in DEFAULT_STYLES]
    assert {"photo", "anime", "watercolor", "cinematic", "pixel-art", "line-art"} <= set(names)
    assert len(names) == len(set(names))
    for style in DEFAULT_STYLES:
        assert check_style_name(style.name) == style.name and style.default
        assert check_style_texts(style.prompt_suffix, style.negative_prompt) == (
            style.prompt_suffix,
            style.negative_prompt,
        )
        assert style.negative_prompt  # each keeps something out


@pytest.mark.parametrize(("typed", "name"), [("Pixel-Art", "pixel-art"), ("  noir ", "noir"), ("bd_2", "bd_2")])
def test_names_are_one_lower_case_word(typed, name):
    assert check_style_name(typed) == name


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Give the style a name"),
        (None, "Give the style a name"),
        ("pixel art", "one word"),
        ("-dash", "one word"),
        ("<@123>", "one word"),
        ("x" * (MAX_STYLE_NAME_CHARS + 1), f"at most {MAX_STYLE_NAME_CHARS} characters"),
    ],
)
def test_bad_names_are_refused(typed, message):
    with pytest.raises(Refusal, match=message):
        check_style_name(typed)


def test_a_name_from_the_prompt_text_resolves_like_the_slash_option():
    assert check_style_name(split_parameters("a fox --style Pixel-Art").style) == "pixel-art"


def test_texts_are_checked_like_prompts():
    assert check_style_texts(", soft light ", None) == ("soft light", "")
    with pytest.raises(Refusal, match="needs a prompt_suffix"):
        check_style_texts("  ", "blurry")
    with pytest.raises(Refusal, match="style suffix is 201 characters"):
        check_style_texts("x" * 201, None)
    with pytest.raises(Refusal, match="negative prompt is 1,001 characters"):
        check_style_texts("ok", "n" * 1001)


def test_a_server_replaces_hides_and_adds_styles():
    rows = [
        GuildStyle(10, "photo", "polaroid, faded colors", ""),
        GuildStyle(10, "anime", hidden=True),
        GuildStyle(10, "noir", "black and white, hard shadows", "color"),
        GuildStyle(10, "ghost", hidden=True),  # hiding a name the bot does not ship: nothing to hide
    ]
    styles = {s.name: s for s in server_styles(rows)}
    assert styles["photo"] == Style("photo", "polaroid, faded colors", "")
    assert "anime" not in styles and "ghost" not in styles
    assert styles["noir"] == Style("noir", "black and white, hard shadows", "color")
    assert styles["watercolor"] == WATERCOLOR
    assert list(styles) == sorted(styles)
    assert [s.name for s in server_styles([])] == sorted(s.name for s in DEFAULT_STYLES)


def test_autocomplete_puts_names_that_start_with_the_text_first_and_stops_at_25():
    styles = server_styles([GuildStyle(10, f"art{i:02d}", "x") for i in range(30)])
    assert [s.name for s in matching(styles, "ART")][:3] == ["art00", "art01", "art02"]
    assert len(matching(styles, "")) == MAX_CHOICES
    names = [s.name for s in matching(server_styles([]), "art")]
    assert names == ["line-art", "pixel-art"]  # no name starts with "art"; these contain it
    assert [s.name for s in matching(server_styles([]), "p")] == ["photo", "pixel-art", "oil-painting"]
    assert matching(server_styles([]), "zzz") == []


def test_choice_labels_fit_discord():
    label = choice_label(Style("long", "y" * 300))
    assert len(label) == 100 and label.startswith("long: y") and label.endswith("…")


def test_unknown_style_names_it_and_a_few_known_ones():
    text = str(unknown_style("neon", server_styles([])))
    assert "“neon”" in text and "3d-render, anime, cinematic" in text and text.endswith("watercolor.")
    more = str(unknown_style("neon", server_styles([GuildStyle(10, "zine", "risograph print")])))
    assert more.endswith(", ….") and "zine" not in more
    assert "offers none" in str(unknown_style("neon", ()))


def test_applying_a_style_adds_its_texts_once():
    prompt, negative = apply_style("a fox", "", WATERCOLOR)
    assert prompt == f"a fox, {WATERCOLOR.prompt_suffix}" and negative == WATERCOLOR.negative_prompt
    assert apply_style(prompt, negative, WATERCOLOR) == (prompt, negative)  # a styled prompt copied back
    prompt, negative = apply_style("a fox,", "people", WATERCOLOR)
    assert prompt == f"a fox, {WATERCOLOR.prompt_suffix}" and negative == f"people, {WATERCOLOR.negative_prompt}"


def test_a_styled_prompt_is_held_to_the_limits():
    with pytest.raises(Refusal, match="prompt with the style `watercolor` is"):
        apply_style("x" * (MAX_PROMPT_CHARS - 10), "", WATERCOLOR)
    with pytest.raises(Refusal, match="negative prompt with the style `watercolor`"):
        apply_style("a fox", "n" * (MAX_PROMPT_CHARS - 10), WATERCOLOR)
    gory = Style("gory", "gore everywhere")
    with pytest.raises(Refusal, match="“gore”"):
        apply_style("a fox", "", gory, blocked_words=("gore",))
    assert apply_style("a fox", "", gory, blocked_words=("gore",), age_restricted=True)[0] == "a fox, gore everywhere"
