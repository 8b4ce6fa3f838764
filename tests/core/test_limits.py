"""Input checks: each refusal says exactly what is wrong."""

from __future__ import annotations

import pytest

from core.limits import (
    Refusal,
    check_aspect,
    check_final_model,
    check_prompt,
    check_search,
    check_seed,
    check_user_limits,
    clean_text,
    find_blocked_word,
    parse_word_list,
)
from engine.api import MAX_SEED


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "empty"),
        (None, "empty"),
        ("  \t\n", "blank or invisible"),
        ("\u200b\u200c\u200d\u2060\ufeff\u00ad", "blank or invisible"),
        ("\u3164\u2800", "blank or invisible"),
        ("a" * 1001, "1,001 characters long; the limit is 1,000"),
    ],
)
def test_bad_prompts(prompt, message):
    with pytest.raises(Refusal, match=message):
        check_prompt(prompt)


def test_good_prompts_are_cleaned_not_rewritten():
    assert check_prompt("  \u200ba cat\u200b  ") == "a cat"
    assert check_prompt("🦊") == "🦊"
    assert check_prompt("❤️") == "❤️"  # the variation selector stays
    assert check_prompt("👨‍👩‍👧 family") == "👨‍👩‍👧 family"  # joiners inside stay
    assert check_prompt("café\u0301") == "café\u0301"
    assert check_prompt("a" * 1000) == "a" * 1000
    assert clean_text("a\x00b\x1bc") == "a b c"


def test_blocked_words_are_whole_words_case_insensitive():
    words = ("gore", "blood bath")
    with pytest.raises(Refusal, match="“gore”"):
        check_prompt("GORE!", blocked_words=words)
    with pytest.raises(Refusal, match="blood bath"):
        check_prompt("a Blood Bath scene", blocked_words=words)
    assert check_prompt("gorgeous", blocked_words=words) == "gorgeous"
    assert check_prompt("gore", blocked_words=words, age_restricted=True) == "gore"
    assert find_blocked_word("x", ["", "  "]) is None


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40, True, 1.5, "7"])
def test_bad_seeds(seed):
    with pytest.raises(Refusal):
        check_seed(seed)


def test_seeds():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    with pytest.raises(Refusal, match=f"use at most {MAX_SEED - 3}"):
        check_seed(MAX_SEED, count=4)
    for _ in range(100):
        assert 0 <= check_seed(None, count=4) <= MAX_SEED - 3


def test_aspect_model_search():
    assert check_aspect(None) == "1:1" and check_aspect(" 16:9 ") == "16:9"
    with pytest.raises(Refusal, match="Unknown aspect ratio '5:7'"):
        check_aspect("5:7")
    assert check_final_model(None, "ssd-1b") == "ssd-1b" and check_final_model("SDXL", "ssd-1b") == "sdxl"
    with pytest.raises(Refusal, match="Unknown model"):
        check_final_model("mj", "ssd-1b")
    assert check_search("  ") is None and check_search("100%") == "100%"
    with pytest.raises(Refusal, match="limit is 40"):
        check_search("x" * 41)


def test_word_lists():
    assert parse_word_list("Gore, blood bath\n gore ,,") == ("gore", "blood bath")
    with pytest.raises(Refusal):
        parse_word_list(" , ")
    with pytest.raises(Refusal, match="longer than 50"):
        parse_word_list("x" * 51)


def test_user_limits():
    check_user_limits(waiting=2, recent=5, max_waiting=3, max_per_minute=6)
    with pytest.raises(Refusal, match="1 job waiting; this server allows 1"):
        check_user_limits(waiting=1, recent=0, max_waiting=1, max_per_minute=6)
    with pytest.raises(Refusal, match="6 jobs in the last minute"):
        check_user_limits(waiting=0, recent=6, max_waiting=3, max_per_minute=6)


@pytest.mark.parametrize(
    "prompt",
    [
        "a _nude_ woman",
        "a nude2 woman",
        "a 2nude woman",
        "nu\u00adde",  # soft hyphen
        "nu\u200bde",  # zero-width space
        "nu\u2060de",  # word joiner
        "\uff4e\uff55\uff44\uff45",  # fullwidth ｎｕｄｅ
        "NUDE",
        "a Nude-woman",
    ],
)
def test_blocked_words_are_found_through_evasions(prompt):
    with pytest.raises(Refusal, match="“nude”"):
        check_prompt(prompt, blocked_words=("nude",))


def test_blocked_phrases_match_across_separators():
    for prompt in ("a blood_bath", "blood  bath", "blood-bath", "blood\u200b bath"):
        assert find_blocked_word(prompt, ("blood bath",)) == "blood bath"


def test_blocked_words_do_not_over_block_innocent_words():
    words = ("nude", "gore", "ass")
    for prompt in ("nudes", "denuded", "gorgeous", "a gorge at dawn", "glass bass", "class_assignment", "passé"):
        assert find_blocked_word(prompt, words) is None, prompt
    assert check_prompt("a \uff47\uff4f\uff52\uff47\uff45", blocked_words=words) == "a \uff47\uff4f\uff52\uff47\uff45"
