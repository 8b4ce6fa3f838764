"""Image files: parameters travel inside the PNG."""

from __future__ import annotations

from PIL import Image

from engine.output import encode_png, parameters_text, read_parameters


def test_parameters_chunk_round_trips():
    text = parameters_text(
        prompt="a fox", negative_prompt="blurry", steps=28, guidance=7, seed=42, width=1024, height=1024, model="ssd-1b"
    )
    assert text.splitlines() == [
        "a fox",
        "Negative prompt: blurry",
        "Steps: 28, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 1024x1024, Model: SSD-1B",
    ]
    img = Image.new("RGB", (64, 64))
    assert read_parameters(encode_png(img, text)) == text
