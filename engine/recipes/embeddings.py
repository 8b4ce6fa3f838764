"""Prompt embeddings from a small LRU cache: a reroll, a variation or an upscale of the same prompt
never runs the text encoders again, and a batch encodes each distinct prompt once.

Weighted prompts (``(word:1.3)``, ``word++``, ``BREAK``) are encoded by compel
(:class:`engine.prompts.WeightedPromptEncoder`) when :func:`engine.prompts.to_compel` finds weighting
syntax, and compel chunks them when they are long. Plain prompts that fit in CLIP's 77 tokens take the
pipeline's own encoder, unchanged; longer plain prompts are encoded in chunks of 75 tokens
(:func:`encode_chunked`), as A1111 and compel do, instead of being cut at 77 by the pipeline, which lost
a style preset or ``/prefer`` suffix appended at the end. All are cached by the text as typed;
embeddings of different lengths (long prompts) are padded with the empty prompt's chunk, as compel pads.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ..prompts import WeightedPromptEncoder, to_compel


@dataclass
class PromptEmbeds:
    """Text-encoder outputs of one text (batch of 1), on the device."""

    embeds: torch.Tensor
    pooled: torch.Tensor


@dataclass
class PromptCache:
    """A small LRU of prompt embeddings keyed by (text encoders, text); negative prompts share it."""

    size: int
    _items: OrderedDict[tuple, PromptEmbeds] = field(default_factory=OrderedDict)
    encoder_runs: int = 0  # calls of the text encoders (for tests and the benchmark)
    hits: int = 0

    def get(self, key: tuple) -> PromptEmbeds | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: tuple, value: PromptEmbeds) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class PromptEncoder:
    """Pipeline keyword arguments (``prompt_embeds`` ...) for prompts, through a :class:`PromptCache`."""

    def __init__(self, cache: PromptCache) -> None:
        self.cache = cache
        self._weighted: dict[int, WeightedPromptEncoder] = {}  # id(pipe) -> its compel encoder

    def embeddings(
        self,
        pipe,
        prompts: list[str],
        negative_prompts: list[str] | None = None,
        guidance: bool = False,
        tag: tuple = (),
    ) -> dict[str, torch.Tensor]:
        """Embeddings for one image per prompt, from the cache.

        Entries are keyed by the text encoders (the very modules: Turbo and SSD-1B share them when
        their weights are the same), ``tag`` (the active LoRAs, which change the text encoders) and the
        text, so an upscale finds the embedding its draft made. SDXL encodes a negative prompt exactly
        like a prompt, and an empty one is zeros (``force_zeros_for_empty_prompt``), so negatives come
        from the same entries. The text encoders run once per call at most, on the distinct texts the
        cache does not hold.
        """
        encoders = (id(pipe.text_encoder) if pipe.text_encoder is not None else None, id(pipe.text_encoder_2))
        negatives = list(negative_prompts or [""] * len(prompts))
        zeros_for_empty = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", True))
        texts = list(prompts)
        if guidance:
            texts += [n for n in negatives if n or not zeros_for_empty]

        def key(text: str) -> tuple:
            return (encoders, text) if not tag else (encoders, tag, text)

        found: dict[str, PromptEmbeds] = {}
        for text in dict.fromkeys(texts):
            hit = self.cache.get(key(text))
            if hit is not None:
                found[text] = hit
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        weighted = [t for t in missing if to_compel(t) is not None]
        long = [t for t in missing if t not in weighted and is_long(pipe, t)]
        missing = [t for t in missing if t not in weighted and t not in long]
        for text in long:  # plain, past 77 tokens: in chunks, not cut
            found[text] = encode_chunked(pipe, text)
            self.cache.encoder_runs += 1
            self.cache.put(key(text), found[text])
        for text in weighted:  # compel: weights, BREAK, prompts longer than 77 tokens
            encoded = self._weighted_encoder(pipe).encode(text)
            self.cache.encoder_runs += 1
            found[text] = PromptEmbeds(encoded.prompt_embeds, encoded.pooled_prompt_embeds)
            self.cache.put(key(text), found[text])
        if missing:
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=missing,
                device=pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
            self.cache.encoder_runs += 1
            for j, text in enumerate(missing):
                found[text] = PromptEmbeds(embeds[j : j + 1], pooled[j : j + 1])
                self.cache.put(key(text), found[text])
        lengths = {e.embeds.shape[1] for e in found.values()}
        if len(lengths) > 1:  # a long prompt beside shorter ones: pad them all to the longest
            empty = self.cache.get(key(""))
            if empty is None:
                embeds, _, pooled, _ = pipe.encode_prompt(
                    prompt=[""], device=pipe._execution_device, num_images_per_prompt=1,
                    do_classifier_free_guidance=False,
                )
                self.cache.encoder_runs += 1
                empty = PromptEmbeds(embeds, pooled)
                self.cache.put(key(""), empty)
            found = _padded(found, empty.embeds, max(lengths))
        out = {
            "prompt_embeds": torch.cat([found[p].embeds for p in prompts]),
            "pooled_prompt_embeds": torch.cat([found[p].pooled for p in prompts]),
        }
        if guidance:
            first = out["prompt_embeds"][:1], out["pooled_prompt_embeds"][:1]
            zero = PromptEmbeds(torch.zeros_like(first[0]), torch.zeros_like(first[1]))
            neg = [found[n] if (n or not zeros_for_empty) else zero for n in negatives]
            out["negative_prompt_embeds"] = torch.cat([e.embeds for e in neg])
            out["negative_pooled_prompt_embeds"] = torch.cat([e.pooled for e in neg])
        return out

    def _weighted_encoder(self, pipe) -> WeightedPromptEncoder:
        encoder = self._weighted.get(id(pipe))
        if encoder is None:
            encoder = self._weighted[id(pipe)] = WeightedPromptEncoder(pipe)
        return encoder


def _padded(found: dict[str, PromptEmbeds], empty: torch.Tensor, length: int) -> dict[str, PromptEmbeds]:
    """Embeddings made ``length`` tokens long with chunks of the empty prompt's embedding ``empty`` (as compel
    pads)."""
    out = {}
    for text, e in found.items():
        short = length - e.embeds.shape[1]
        if short > 0:
            chunks = empty.repeat(1, math.ceil(short / empty.shape[1]), 1)[:, :short].to(e.embeds.dtype)
            e = PromptEmbeds(torch.cat([e.embeds, chunks], dim=1), e.pooled)
        out[text] = e
    return out


def _encoders(pipe) -> list[tuple]:
    """(tokenizer, text encoder) pairs of ``pipe``: CLIP-L and bigG, or bigG alone (the refiner)."""
    pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
    return [(t, e) for t, e in pairs if t is not None and e is not None]


def _token_ids(pipe, tokenizer, text: str) -> list[int]:
    """The tokens of ``text`` without start and end markers, as the pipeline's encoder reads it."""
    convert = getattr(pipe, "maybe_convert_prompt", None)  # textual inversion's multi-vector tokens
    if convert is not None:
        text = convert(text, tokenizer)
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids


def is_long(pipe, text: str) -> bool:
    """Whether ``text`` is past what one 77-token window holds (75 tokens between the markers)."""
    return any(len(_token_ids(pipe, t, text)) > t.model_max_length - 2 for t, _ in _encoders(pipe))


def _chunks(tokenizer, ids: list[int], count: int) -> torch.Tensor:
    """``count`` windows of ``model_max_length`` tokens: start marker, 75 tokens, end marker, padding; the
    windows past the text's own are empty ones (a prompt with fewer tokens in one tokenizer than the other)."""
    size = tokenizer.model_max_length - 2
    rows = []
    for n in range(count):
        part = ids[n * size : (n + 1) * size]
        row = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id]
        rows.append(row + [tokenizer.pad_token_id] * (size + 2 - len(row)))
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def encode_chunked(pipe, text: str) -> PromptEmbeds:
    """A plain prompt longer than 77 tokens, encoded as A1111 and compel do: each window of 75 tokens gets its own
    start and end markers and padding and goes through the text encoders as the pipeline's ``encode_prompt``
    sends one prompt (penultimate hidden states); the windows' states follow one another (77 positions each),
    CLIP-L's and bigG's side by side. The pooled embedding is the first window's, which is what the pipeline
    pools for a prompt it cuts at 77 tokens and what SDXL was trained on. A text that fits in one window
    gives exactly ``encode_prompt``'s embedding."""
    from diffusers.utils.torch_utils import get_module_execution_device

    pairs = _encoders(pipe)
    ids = [_token_ids(pipe, tokenizer, text) for tokenizer, _ in pairs]
    count = max(max(1, math.ceil(len(i) / (t.model_max_length - 2))) for i, (t, _) in zip(ids, pairs, strict=True))
    states, pooled = [], None
    for token_ids, (tokenizer, encoder) in zip(ids, pairs, strict=True):
        windows = _chunks(tokenizer, token_ids, count)
        out = encoder(windows.to(get_module_execution_device(encoder)), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:  # bigG's projected pooled output, as in encode_prompt
            pooled = out[0][:1]
        hidden = out.hidden_states[-2]
        states.append(hidden.reshape(1, count * hidden.shape[1], hidden.shape[2]))
    assert pooled is not None, "SDXL's second text encoder gives the pooled embedding"
    dtype = pipe.text_encoder_2.dtype if pipe.text_encoder_2 is not None else pipe.unet.dtype
    embeds = torch.cat(states, dim=-1).to(dtype=dtype, device=pipe._execution_device)
    return PromptEmbeds(embeds, pooled)
