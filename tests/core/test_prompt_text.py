"""Parameters after the prompt and {a, b} permutations: what people type, what they get back."""

from __future__ import annotations

import re

import pytest

from core.limits import Refusal
from core.prompt_text import PromptParams, expand_permutations, help_text, split_parameters


def test_plain_prompt_has_no_parameters():
    p = split_parameters("  a red fox in snow ")
    assert p == PromptParams(prompt="a red fox in snow")
    assert p.recorded() == {}


def test_every_parameter_is_read():
    p = split_parameters(
        "a lighthouse --ar 16:9 --seed 5 --no trees,  people --steps 3 --chaos 40 --tile "
        "--style Watercolor --model sdxl"
    )
    assert p.prompt == "a lighthouse"
    assert p.recorded() == {
        "aspect": "16:9",
        "seed": 5,
        "negative": "trees, people",
        "steps": 3,
        "chaos": 40,
        "tile": True,
        "style": "watercolor",
        "model": "sdxl",
    }


def test_ratio_is_reduced_and_aliases_work():
    assert split_parameters("x --aspect 32:18").aspect == "16:9"
    assert split_parameters("x --ar 2x3").aspect == "2:3"
    assert split_parameters("x --c 10").chaos == 10
    assert split_parameters("x --model ssd1b").model == "ssd-1b"


def test_phone_dash_counts_as_double_dash():
    assert split_parameters("a cat \u2014ar 3:4").aspect == "3:4"


def test_dashes_inside_the_prompt_stay_in_it():
    p = split_parameters("a -- b and x--y, 3 -- 4")
    assert p.prompt == "a -- b and x--y, 3 -- 4"
    assert p.recorded() == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a cat --size 3", ["--size", "--ar"]),
        ("a cat --ar 5:7", ["--ar “5:7”", "16:9"]),
        ("a cat --ar wide", ["--ar", "16:9"]),
        ("a cat --seed -1", ["--seed", "0 to"]),
        ("a cat --seed", ["--seed needs a value"]),
        ("a cat --steps 0", ["--steps must be 1 to 100"]),
        ("a cat --chaos 101", ["--chaos must be 0 to 100"]),
        ("a cat --chaos lots", ["--chaos takes a whole number"]),
        ("a cat --tile yes", ["--tile takes no value"]),
        ("a cat --model dalle", ["--model “dalle”", "ssd-1b", "sdxl"]),
        ("a cat --seed 1 --seed 2", ["--seed is given twice"]),
        ("a cat --ar 1:1 --aspect 1:1", ["given twice"]),
        ("a cat --no", ["--no needs a value"]),
        ("a cat --lora", ["--lora needs a value", "pixel-art:0.8"]),
        ("a cat --lora :0.5", ["without a name"]),
        ("a cat --lora ink, :", ["without a name"]),
        ("a cat --lora ink, , glow", ["without a name"]),
        ("a cat --lora ink --lora glow", ["--lora is given twice", "after one --lora, comma separated"]),
        ("a cat --iw", ["--iw needs a value"]),
        ("a cat --iw lots", ["--iw takes a number", "--iw 0.5"]),
        ("a cat --iw 1e3", ["--iw takes a number"]),
        ("a cat --iw 1 --iw 2", ["--iw is given twice; give it once"]),
        ("a cat --sref https://example.com/look.png", ["--sref takes no value"]),
    ],
)
def test_bad_parameters_are_refused_by_name(text, words):
    with pytest.raises(Refusal) as e:
        split_parameters(text)
    for word in words:
        assert word in str(e.value)


def test_lora_picks_with_and_without_weights():
    assert split_parameters("a cat --lora pixel-art:0.8, ink").loras == (("pixel-art", 0.8), ("ink", None))
    assert split_parameters("a cat --lora ink : -1.5").loras == (("ink", -1.5),)
    # the range is the add-on check's (against the engine's offer): the text only has to be a number
    assert split_parameters("a cat --lora ink:7").loras == (("ink", 7.0),)
    assert split_parameters("x --lora a, b, c").loras == (("a", None), ("b", None), ("c", None))
    # LoRA names are file stems, which may hold ":": what follows the last ":" is a weight only if it is a number
    assert split_parameters("x --lora style:v2").loras == (("style:v2", None),)
    assert split_parameters("x --lora style:v2:0.5, ink:nan").loras == (("style:v2", 0.5), ("ink:nan", None))
    # "-0" is no negative weight: it is shown and stored as 0
    assert str(split_parameters("x --lora ink:-0").loras[0][1]) == "0.0"
    assert str(split_parameters("x --iw -0").reference_weight) == "0.0"


def test_reference_weight_and_style_flag():
    p = split_parameters("a cat in a hat --iw .75 --sref")
    assert (p.prompt, p.reference_weight, p.reference_style) == ("a cat in a hat", 0.75, True)
    assert p.recorded() == {"reference_weight": 0.75, "reference_style": True}


def test_slash_options_win_over_text():
    p = split_parameters("a cat --ar 16:9 --seed 5").merged_with(aspect="1:1", seed=None, negative="dogs")
    assert (p.aspect, p.seed, p.negative) == ("1:1", 5, "dogs")


def test_permutations_make_every_combination_in_order():
    assert expand_permutations("a {red, blue} {car, bike}", limit=4) == [
        "a red car",
        "a red bike",
        "a blue car",
        "a blue bike",
    ]


def test_permutations_reach_parameters_too():
    texts = expand_permutations("a fox --ar {1:1, 16:9}", limit=4)
    assert [split_parameters(t).aspect for t in texts] == ["1:1", "16:9"]


def test_no_braces_is_one_prompt_and_escaped_braces_stay():
    assert expand_permutations("a plain prompt", limit=1) == ["a plain prompt"]
    assert expand_permutations(r"json \{key\} art", limit=1) == ["json {key} art"]


def test_repeated_choices_make_one_job():
    assert expand_permutations("a {cat, cat}", limit=4) == ["a cat"]


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("a {red, blue, green} {car, bike}", "6 combinations"),
        ("a {red, } car", "empty one"),
        ("a {red car", "never closed"),
        ("a red} car", "without a"),
        ("a {red {car, bike}}", "nested"),
    ],
)
def test_bad_permutations_are_refused(text, word):
    with pytest.raises(Refusal) as e:
        expand_permutations(text, limit=4)
    assert word in str(e.value)


def test_help_names_every_parameter():
    text = help_text()
    for name in ("--ar", "--seed", "--no", "--steps", "--chaos", "--tile", "--style", "--model", "{a, b}",
                 "--lora NAME[:WEIGHT]", "--iw", "--sref"):
        assert name in text
    assert "-2 to 2" in text and "0 to 2" in text  # the engine's ranges


@pytest.mark.parametrize(
    "text",
    [
        "a cat --model " + "x" * 3000,
        "a cat --" + "n" * 3000,
        "a cat --seed " + "9" * 3000,  # a whole number, too large: once repeated in full
        "a cat --ar " + "1" * 3000,
        "a cat --chaos " + "z" * 3000,
        "a cat --tile " + "y" * 3000,
        "a cat --iw " + "w" * 3000,
        "a cat --lora :" + "q" * 3000,
        "a {" + "c" * 3000 + ", }",
    ],
)
def test_a_refusal_repeats_at_most_a_short_quoted_piece_of_what_was_typed(text):
    """A refusal over 2,000 characters is refused by Discord, and in an image channel the member hears nothing."""
    with pytest.raises(Refusal) as e:
        split_parameters(text) if "{" not in text else expand_permutations(text, limit=4)
    said = str(e.value)
    assert len(said) < 400 and "…”" in said, said


@pytest.mark.parametrize(
    "text",
    [
        "a cat --model [click](https://evil.example)",
        "a cat --ar [click](https://evil.example)",
        "a cat --iw [click](https://evil.example)",
    ],
)
def test_a_refusal_shows_a_masked_link_as_typed_not_as_a_link(text):
    with pytest.raises(Refusal) as e:
        split_parameters(text)
    said = str(e.value)
    assert re.search(r"(?<!\\)\[click\]\(", said) is None, said  # Discord would draw “click” as a link
    assert "\\[click](https://evil.example)" in said


def test_a_refusal_quotes_mentions_and_markdown_as_text():
    with pytest.raises(Refusal) as e:
        split_parameters("a cat --model <@123> @everyone **big** ||hidden||")
    said = str(e.value)
    assert "\\<@123>" in said and "@\u200beveryone" in said and "\\*\\*big" in said and "\\|\\|hid" in said
