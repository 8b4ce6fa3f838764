"""Prompt weights through compel: A1111 and compel syntax, long prompts, plain prompts untouched."""

from __future__ import annotations

import pytest
import torch

from engine.prompts import WeightedPromptEncoder, to_compel


@pytest.mark.parametrize(
    ("a1111", "compel"),
    [
        ("a (red:1.3) fox", "a (red)1.3 fox"),
        ("a (red) fox", "a (red)1.1 fox"),
        ("a ((red)) fox", "a ((red)1.1)1.1 fox"),
        ("a [red] fox", "a (red)0.9091 fox"),
        ("a (big red: 0.5) fox", "a (big red)0.5 fox"),
        (r"a \(red\) fox (dark:1.2)", r"a \(red\) fox (dark)1.2"),
        ("a (red fox", r"a \(red fox"),
        ("cat BREAK dog (x:1.2)", '("cat", "dog (x)1.2").and()'),
    ],
)
def test_a1111_syntax_becomes_compel_syntax(a1111, compel):
    assert to_compel(a1111) == compel


def test_compel_syntax_passes_through_and_plain_prompts_are_left_alone():
    assert to_compel("a red++ fox") == "a red++ fox"
    assert to_compel("a (red fox)1.3") == "a (red fox)1.3"
    assert to_compel('("a cat", "a dog").blend(0.7, 0.3)') == '("a cat", "a dog").blend(0.7, 0.3)'
    assert to_compel("a red fox in snow, 4k, well-lit") is None
    assert to_compel("") is None


@pytest.fixture(scope="module")
def turbo_pipe(tiny_cache_dir):
    from diffusers import StableDiffusionXLPipeline

    from engine.tiny import tiny_root

    return StableDiffusionXLPipeline.from_pretrained(str(tiny_root(tiny_cache_dir) / "turbo"))


@pytest.fixture(scope="module")
def refiner_pipe(tiny_cache_dir):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from engine.tiny import tiny_root

    return StableDiffusionXLImg2ImgPipeline.from_pretrained(str(tiny_root(tiny_cache_dir) / "sdxl-refiner"))


def _plain(pipe, prompt, negative=""):
    embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
        prompt, negative_prompt=negative, do_classifier_free_guidance=True, device="cpu"
    )
    return embeds, pooled


def test_weight_one_equals_the_plain_prompt(turbo_pipe):
    encoder = WeightedPromptEncoder(turbo_pipe)
    plain_embeds, plain_pooled = _plain(turbo_pipe, "a red fox")
    weighted = encoder.encode("a (red:1.0) fox")
    assert weighted.prompt_embeds.shape == plain_embeds.shape
    assert torch.allclose(weighted.prompt_embeds, plain_embeds, atol=1e-5)
    assert torch.allclose(weighted.pooled_prompt_embeds, plain_pooled, atol=1e-5)


def test_a_weight_changes_the_conditioning(turbo_pipe):
    encoder = WeightedPromptEncoder(turbo_pipe)
    plain = encoder.encode("a red fox")
    up = encoder.encode("a (red:1.5) fox")
    compel_up = encoder.encode("a (red)1.5 fox")
    assert not torch.allclose(up.prompt_embeds, plain.prompt_embeds, atol=1e-3)
    assert torch.allclose(up.prompt_embeds, compel_up.prompt_embeds)


def test_long_prompts_are_chunked_not_cut(turbo_pipe):
    encoder = WeightedPromptEncoder(turbo_pipe)
    words = " ".join(f"word{i}" for i in range(120))
    long = encoder.encode(f"(a:1.1) {words}")
    assert long.prompt_embeds.shape[1] > 77  # two or more chunks of 77 tokens
    assert long.negative_prompt_embeds.shape == long.prompt_embeds.shape


def test_the_refiner_uses_its_one_text_encoder(refiner_pipe):
    encoder = WeightedPromptEncoder(refiner_pipe)
    cond = encoder.encode("a (red:1.4) fox", "blurry")
    assert cond.prompt_embeds.shape[-1] == refiner_pipe.text_encoder_2.config.hidden_size
    assert cond.pooled_prompt_embeds.shape == (1, refiner_pipe.text_encoder_2.config.projection_dim)
    assert cond.negative_prompt_embeds.shape == cond.prompt_embeds.shape
