"""Describe on the tiny preset: a tiny random BLIP saved with save_pretrained, loaded through from_pretrained."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.addons import describe as describe_mod
from engine.addons.describe import DescribeError, Describer, clean_caption


def png(seed: int = 0) -> bytes:
    pixels = (np.random.RandomState(seed).rand(64, 64, 3) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def describer(addon_settings) -> Describer:
    return Describer(addon_settings, device="cpu")


def test_four_distinct_prompt_suggestions(describer):
    suggestions = describer.describe(png())
    assert len(suggestions) == 4
    assert all(isinstance(s, str) and s.strip() == s and len(s) >= 3 for s in suggestions)
    assert len({s.lower() for s in suggestions}) == 4
    assert not any("[" in s for s in suggestions)  # no special tokens left in a prompt
    three = describer.describe(png(), count=3)
    assert len(three) == 3 and len(set(three)) == 3


def test_bad_image_bytes_give_a_clear_error(describer):
    with pytest.raises(DescribeError, match="not an image"):
        describer.describe(b"\x89PNG\r\n\x1a\n but then nothing")
    with pytest.raises(DescribeError, match="empty"):
        describer.describe(b"")
    with pytest.raises(DescribeError, match="3 to 4"):
        describer.describe(png(), count=6)


def test_captions_are_cleaned_into_prompts():
    assert clean_caption("arafed man sitting on a bench") == "man sitting on a bench"
    assert clean_caption("there is a cat cat on a close - up table .") == "a cat on a close-up table"
    assert clean_caption("  a picture of a red car , at night ") == "a red car, at night"


def test_missing_gives_one_line(addon_settings, tmp_path):
    assert describe_mod.missing(addon_settings) is None
    assert describe_mod.missing(addon_settings.replace(describe_model="")) is None
    line = describe_mod.missing(addon_settings.replace(describe_model=str(tmp_path)))
    assert "/describe is hidden" in line and "\n" not in line


def test_duplicates_are_dropped_and_prefixes_top_up(addon_settings, monkeypatch):
    describer = Describer(addon_settings)
    asked: list[str | None] = []
    answers = {
        None: ["arafed a cat on a sofa", "a cat on a sofa", "there is a cat on a sofa .", "A cat on a sofa"],
        "a painting of": ["a painting of a cat on a sofa"],
        "a photograph of": ["a photograph of a cat on a sofa"],
        "an illustration of": ["an illustration of a cat"],
    }

    def fake_generate(image, prefix, count):
        asked.append(prefix)
        return answers.get(prefix, [])

    monkeypatch.setattr(describer, "_generate", fake_generate)
    assert describer.describe(png()) == [
        "a cat on a sofa",
        "a painting of a cat on a sofa",
        "a photograph of a cat on a sofa",
        "an illustration of a cat",
    ]
    assert asked == [None, "a painting of", "a photograph of", "an illustration of"]
    answers.clear()
    with pytest.raises(DescribeError, match="too little"):
        describer.describe(png())
