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
    with pytest.raises(Refusal, match="Unknown aspect ratio “5:7”"):
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


@pytest.mark.parametrize(
    "prompt",
    [
        "a nud\u0435 woman",  # Cyrillic е
        "a n\u057d\u0501\u0435 woman",  # Armenian ս, Cyrillic ԁ and е
        "\u0430 NUD\u0415",  # capitals: Cyrillic Е
        "a \u0578ude woman",  # Armenian ո for n
        "a nud\u0435_photo",
    ],
)
def test_blocked_words_are_found_through_lookalike_letters_of_other_scripts(prompt):
    with pytest.raises(Refusal, match="“nude”"):
        check_prompt(prompt, blocked_words=("nude",))


def test_a_word_written_all_in_lookalikes_among_latin_words_is_folded_too():
    assert find_blocked_word("a \u0441\u043e\u0441k in a hat", ("cock",)) == "cock"  # Cyrillic с, о, с
    assert find_blocked_word("a big \u0455\u0435\u0445 scene", ("sex",)) == "sex"  # Cyrillic ѕ, е, х


# Words made only of letters that pass for Latin ones: folded alone they would spell "rope", "cepa", "xop", "oca".
RUSSIAN = "Горе и море: хор поёт, оса летит, сера в камне; кошка на крыше, красивая девушка в саду"
JAPANESE = "桜の木の下で猫がロープで遊ぶ、富士山、アニメ風、カラフル"


@pytest.mark.parametrize("prompt", [RUSSIAN, "горе", "хор", "Сова у окна", JAPANESE, "Ελληνικό τοπίο, ήλιος"])
def test_folding_lookalikes_never_refuses_ordinary_prompts_in_other_languages(prompt):
    words = ("rope", "cepa", "xop", "oca", "nude", "cop", "ass", "sex", "porn", "gore", "ok")
    assert find_blocked_word(prompt, words) is None
    assert check_prompt(prompt, blocked_words=words) == prompt


def test_a_blocked_word_in_another_script_is_found_as_written_among_latin_words():
    assert find_blocked_word("a \u0440\u043e\u0435 photo", ("\u0440\u043e\u0435",)) == "\u0440\u043e\u0435"  # "рое"
    assert find_blocked_word("порно", ("порно",)) == "порно"


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_bidi_controls_leave_the_prompt_wherever_they_are():
    """A right-to-left override reorders what follows it; the text encoder reads nothing in it."""
    prompt = f"a fox \u202eeulb\u202c in {BIDI}snow"
    assert check_prompt(prompt) == "a fox eulb in snow"
    assert not set(BIDI) & set(check_prompt(prompt))
