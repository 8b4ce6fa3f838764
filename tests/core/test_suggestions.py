"""/describe's message: the suggestions are shown escaped and read back exactly as the engine gave them."""

from __future__ import annotations

from core.suggestions import clean, suggestion_from, suggestions_text


def test_suggestions_read_back_as_given_though_shown_escaped():
    given = ["a *bold* cat_on a mat", "@everyone look", "back\\slash | pipes ~x~ `code`", "# not a heading"]
    text = suggestions_text(given, 42)
    assert "\\*bold\\*" in text and "@everyone" not in text  # shown escaped: no markdown, no mention
    assert [suggestion_from(text, n) for n in range(1, 5)] == given
    assert suggestion_from(text, 5) is None and suggestion_from("no list here", 1) is None


def test_clean_keeps_four_distinct_one_line_suggestions():
    assert clean(["a  cat\non a mat", "", "a cat on a mat", "b", "c", "d", "e"]) == ["a cat on a mat", "b", "c", "d"]
    assert len(clean(["x" * 500])[0]) == 300
