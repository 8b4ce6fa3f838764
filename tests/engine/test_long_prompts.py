"""Prompts past CLIP's 77 tokens keep every word: plain or weighted, prompt or negative, both text
encoders and the refiner's bigG alone. A prompt that fits in 77 tokens is encoded as before, byte for byte.

The tiny preset's tokenizer reads one token per character (spaces apart), so a 95-character prompt is
95 tokens here, as a 95-word prompt is with CLIP's real vocabulary."""

from __future__ import annotations

import pytest
import torch

from engine.api import DraftRequest, FinalRequest

from .conftest import pixels

SIDE = 256
SUFFIX = ", watercolor painting, soft pastel colours"


def tokens(pipe, text: str) -> int:
    """Tokens of ``text`` without the start and end markers."""
    return len(pipe.tokenizer_2(text).input_ids) - 2


def prompt_of(pipe, n: int, start: str = "a red fox in snow at dawn") -> str:
    """A plain prompt of exactly ``n`` tokens."""
    words = start.split()
    text = ""
    i = 0
    while tokens(pipe, text) < n:
        text = f"{text} {words[i % len(words)]}{i}".strip()
        i += 1
    text = text[: len(text) - (tokens(pipe, text) - n)]
    assert tokens(pipe, text) == n, text
    return text


def differ(a, b) -> int:
    """Pixels that differ between two pictures."""
    return int((a != b).any(axis=-1).sum())


def other_tail(text: str) -> str:
    """``text`` with its last 12 characters changed (as many tokens), its first 77 tokens the same."""
    return text[:-12] + "".join(c if c == " " else "z" for c in text[-12:])


def run(engine, request):
    return engine.submit(request, user="u").future.result(timeout=300)


@pytest.fixture(scope="module")
def turbo(shared_engine):
    return shared_engine.registry.get("turbo").text2img


def test_a_style_suffix_after_95_tokens_reaches_the_draft(shared_engine, turbo):
    prompt = prompt_of(turbo, 95)
    plain = run(shared_engine, DraftRequest(prompt, 5, width=SIDE, height=SIDE, count=1)).images[0]
    styled = run(shared_engine, DraftRequest(prompt + SUFFIX, 5, width=SIDE, height=SIDE, count=1)).images[0]
    assert differ(pixels(plain.png), pixels(styled.png)) > 0


@pytest.mark.parametrize("model", ["ssd-1b", "sdxl"])
def test_words_past_77_tokens_reach_finals_with_guidance(shared_engine, turbo, model):
    """Finals with guidance: a 150-token prompt beside a 5-token negative and the reverse, on SSD-1B and on SDXL
    base + refiner (bigG alone); the words past 77 tokens change the picture in each."""
    long = prompt_of(turbo, 150)
    assert tokens(turbo, other_tail(long)) == 150

    def final(prompt, negative):
        request = FinalRequest(prompt, 7, negative_prompt=negative, width=SIDE, height=SIDE, steps=3, model=model)
        return pixels(run(shared_engine, request).images[0].png)

    assert shared_engine.settings.final_guidance(model) > 1.0
    assert differ(final(long, "blurry"), final(other_tail(long), "blurry")) > 0
    assert differ(final("a red fox", long), final("a red fox", other_tail(long))) > 0


def test_prompts_within_77_tokens_are_encoded_as_before(shared_engine, turbo, monkeypatch):
    """A prompt of 75 tokens (what one window holds) and a short one: the pipeline's own encoder, tensors equal to
    its output, and never the chunked encoder."""
    from engine.recipes import embeddings

    monkeypatch.setattr(embeddings, "encode_chunked", lambda *a: pytest.fail("chunked a prompt that fits"))
    shared_engine.recipes.prompts.clear()
    texts = [prompt_of(turbo, 75), "a red fox in snow"]
    got = shared_engine.recipes.embeddings(turbo, texts, ["blurry", ""], guidance=True)
    want, negative, pooled, negative_pooled = turbo.encode_prompt(
        prompt=texts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    assert torch.equal(got["prompt_embeds"], want) and torch.equal(got["pooled_prompt_embeds"], pooled)
    assert got["prompt_embeds"].shape[1] == 77
    blurry = turbo.encode_prompt(prompt=["blurry"], device="cpu", num_images_per_prompt=1,
                                 do_classifier_free_guidance=False)
    assert torch.equal(got["negative_prompt_embeds"][0], blurry[0][0])
    assert not got["negative_prompt_embeds"][1].any()  # the empty negative: zeros, as before


@pytest.mark.parametrize(("n", "windows"), [(1, 1), (75, 1), (76, 2), (150, 2), (151, 3), (225, 3), (226, 4)])
def test_windows_of_75_tokens(turbo, n, windows):
    from engine.recipes.embeddings import encode_chunked, is_long

    text = "x" * n
    assert is_long(turbo, text) == (n > 75)
    got = encode_chunked(turbo, text)
    assert got.embeds.shape == (1, 77 * windows, turbo.unet.config.cross_attention_dim)


def _window_texts(letters: list[str]) -> list[str]:
    return [" ".join(letters[i : i + 75]) for i in range(0, len(letters), 75)]


@pytest.mark.parametrize("model", ["turbo", "refiner"])
def test_each_window_is_what_the_pipeline_makes_of_its_words(shared_engine, model):
    """A 230-token prompt (four windows) on CLIP-L + bigG, and on the refiner's bigG alone: each window of the
    chunked embedding equals the pipeline's own embedding of that window's 75 tokens, the pooled embedding is the
    first window's (what the pipeline pools for the prompt it cuts)."""
    from engine.recipes.embeddings import encode_chunked

    pipes = shared_engine.registry.get("sdxl-refiner" if model == "refiner" else "turbo")
    pipe = pipes.img2img if model == "refiner" else pipes.text2img
    assert (pipe.text_encoder is None) == (model == "refiner")
    letters = [chr(ord("a") + (i * 7) % 26) for i in range(230)]  # one-letter words: one token each
    text = " ".join(letters)
    got = encode_chunked(pipe, text)
    assert got.embeds.shape[1] == 4 * 77
    for k, words in enumerate(_window_texts(letters)):
        want, _, pooled, _ = pipe.encode_prompt(
            prompt=[words], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        assert torch.allclose(got.embeds[:, 77 * k : 77 * (k + 1)], want, atol=1e-6), k
        if k == 0:
            assert torch.allclose(got.pooled, pooled, atol=1e-6)
    cut, _, cut_pooled, _ = pipe.encode_prompt(
        prompt=[text], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    assert torch.allclose(got.pooled, cut_pooled, atol=1e-6)
    assert torch.allclose(got.embeds[:, :77], cut, atol=1e-6)


def test_long_prompts_are_cached_by_their_whole_text(shared_engine, turbo):
    cache = shared_engine.recipes.prompts
    cache.clear()
    long = prompt_of(turbo, 120)
    first = shared_engine.recipes.embeddings(turbo, [long])
    runs = cache.encoder_runs
    again = shared_engine.recipes.embeddings(turbo, [long])  # a reroll: no text encoder
    assert cache.encoder_runs == runs and torch.equal(first["prompt_embeds"], again["prompt_embeds"])
    other = shared_engine.recipes.embeddings(turbo, [other_tail(long)])  # same first 77 tokens, other tail
    assert cache.encoder_runs == runs + 1
    assert not torch.equal(first["prompt_embeds"], other["prompt_embeds"])
    # beside a short prompt in one batch: padded with the empty prompt's window, each keeps its own embedding
    both = shared_engine.recipes.embeddings(turbo, [long, "a fox"])
    assert both["prompt_embeds"].shape == (2, 154, first["prompt_embeds"].shape[2])
    assert torch.equal(both["prompt_embeds"][:1], first["prompt_embeds"])
    empty = turbo.encode_prompt(prompt=[""], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
    assert torch.equal(both["prompt_embeds"][1:, 77:], empty[0])


def test_each_tokenizer_pads_its_windows_with_its_own_pad_token(turbo):
    """SDXL's second tokenizer pads with "!" where the first pads with its end marker (their published
    special_tokens_map.json): each window is padded as the pipeline pads that tokenizer's 77 tokens."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    from engine.recipes.embeddings import encode_chunked

    bang = CLIPTokenizer.from_pretrained(turbo.tokenizer_2.name_or_path, model_max_length=77, pad_token="!")
    assert bang.pad_token_id != turbo.tokenizer.pad_token_id == turbo.tokenizer.eos_token_id
    pipe = StableDiffusionXLPipeline(**{**turbo.components, "tokenizer_2": bang})
    letters = [chr(ord("a") + i % 26) for i in range(100)]
    got = encode_chunked(pipe, " ".join(letters))
    for k, words in enumerate(_window_texts(letters)):
        want, _, pooled, _ = pipe.encode_prompt(
            prompt=[words], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        assert torch.allclose(got.embeds[:, 77 * k : 77 * (k + 1)], want, atol=1e-6), k
    other = encode_chunked(turbo, " ".join(letters))  # the same words, padded with the end marker in bigG
    assert not torch.allclose(other.embeds[:, 77:], got.embeds[:, 77:], atol=1e-4)
