"""Prompt weights and long prompts, through compel: A1111's ``(word:1.3)`` and compel's ``word++`` alike.

People paste prompts from other tools. Two syntaxes are in use:

- A1111 (the Stable Diffusion web UI): ``(word:1.3)``, ``(word)`` = x1.1, ``[word]`` = /1.1,
  ``\\(`` for a literal parenthesis, ``BREAK`` to start a new 75-token chunk.
- compel: ``word++``, ``(two words)1.3``, ``("a", "b").blend(0.7, 0.3)``, ``.and()``.

:func:`to_compel` rewrites an A1111 prompt into compel's syntax (``BREAK`` becomes compel's
``.and()``, which encodes each part on its own and joins them, as a new chunk does) and passes
compel syntax through. compel (``CompelForSDXL``) then builds the embeddings for SDXL's two text
encoders and the pooled embedding, and chunks prompts longer than 77 tokens instead of cutting
them. A prompt with no weighting syntax is not touched at all (``to_compel`` returns None), so it
gives the same image as before.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

_A1111_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*\)")
_A1111 = re.compile(r"\[|\bBREAK\b")
_COMPEL = re.compile(r"\)\s*(?:[+-]+|-?\d+(?:\.\d+)?)|\w[+-]{2,}|\w\+(?=\s|,|$)|\.(?:blend|and)\s*\(")
_WEIGHT_SUFFIX = re.compile(r"^(.*?):\s*(-?\d+(?:\.\d+)?)\s*$", re.DOTALL)
_UP, _DOWN = 1.1, 1 / 1.1


def has_weights(text: str) -> bool:
    return to_compel(text) is not None


def to_compel(text: str) -> str | None:
    """``text`` in compel's syntax, or None when it has no weighting syntax (encode it as it is)."""
    if _A1111_WEIGHT.search(text) or _A1111.search(text):
        return _from_a1111(text)
    if _COMPEL.search(text):
        return text
    if "(" in text:  # "(word)" alone: A1111 reads x1.1
        return _from_a1111(text)
    return None


def _from_a1111(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\bBREAK\b", text)]
    parts = [p for p in parts if p]
    converted = [_convert_weights(p) for p in parts] or [""]
    if len(converted) == 1:
        return converted[0]
    quoted = ", ".join('"' + p.replace('"', '\\"') + '"' for p in converted)
    return f"({quoted}).and()"


def _format_weight(weight: float) -> str:
    return f"{weight:.4f}".rstrip("0").rstrip(".")


def _convert_weights(text: str) -> str:
    """A1111 groups to compel groups; unbalanced brackets are kept as literal characters."""
    stack: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "()[]":
            nxt = text[i + 1]
            stack[-1][1].append("\\" + nxt if nxt in "()" else nxt)
            i += 2
            continue
        if ch in "([":
            stack.append((ch, []))
        elif ch in ")]" and len(stack) > 1 and stack[-1][0] == ("(" if ch == ")" else "["):
            opener, buf = stack.pop()
            body = "".join(buf)
            weight = _UP if opener == "(" else _DOWN
            match = _WEIGHT_SUFFIX.match(body) if opener == "(" else None
            if match:
                body, weight = match.group(1), float(match.group(2))
            stack[-1][1].append(f"({body}){_format_weight(weight)}")
        elif ch in ")":
            stack[-1][1].append("\\)")
        elif ch == "]":
            stack[-1][1].append("]")
        elif ch == '"':
            stack[-1][1].append('\\"')
        else:
            stack[-1][1].append(ch)
        i += 1
    while len(stack) > 1:  # never closed: the opener was a plain character
        opener, buf = stack.pop()
        stack[-1][1].append(("\\(" if opener == "(" else "[") + "".join(buf))
    return "".join(stack[0][1])


@dataclass(frozen=True)
class Conditioning:
    """What the SDXL pipelines take instead of prompt strings (batch of one)."""

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    negative_pooled_prompt_embeds: torch.Tensor

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {
            "prompt_embeds": self.prompt_embeds,
            "pooled_prompt_embeds": self.pooled_prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
            "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds,
        }


class WeightedPromptEncoder:
    """compel for one SDXL-family pipeline (base: both text encoders; refiner: the second only)."""

    def __init__(self, pipe) -> None:
        from compel import Compel, CompelForSDXL, ReturnedEmbeddingsType

        self._pipe = pipe
        device = str(pipe.text_encoder_2.device)
        if getattr(pipe, "text_encoder", None) is not None:
            self._both = CompelForSDXL(pipe, device=device)
            self._second = None
        else:
            self._both = None
            self._second = Compel(
                tokenizer=pipe.tokenizer_2,
                text_encoder=pipe.text_encoder_2,
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                requires_pooled=True,
                truncate_long_prompts=False,
                device=device,
            )

    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str = "") -> Conditioning:
        positive = to_compel(prompt) or _escape_plain(prompt)
        negative = to_compel(negative_prompt) or _escape_plain(negative_prompt)
        if self._both is not None:
            out = self._both(positive, negative_prompt=negative)
            embeds, negative_embeds = out.embeds, out.negative_embeds
            provider = self._both.compel_2.conditioning_provider
        else:
            assert self._second is not None
            both, _ = self._second([positive, negative])
            embeds, negative_embeds = both[:1], both[1:]
            provider = self._second.conditioning_provider
        # compel pools the text as typed, weights and brackets included; the pipelines pool the words.
        pooled = provider.get_pooled_embeddings([_words_of(positive), _words_of(negative)], device=provider.device)
        return Conditioning(embeds, pooled[:1], negative_embeds, pooled[1:])


def _words_of(compel_text: str) -> str:
    """The words of a compel prompt without its syntax: what the pooled embedding should see."""
    from compel import Compel
    from compel.prompt_parser import Blend, FlattenedPrompt, Fragment

    def words(node) -> list[str]:
        if isinstance(node, Fragment):
            return [node.text]
        if isinstance(node, Blend):
            return [w for child in node.prompts for w in words(child)]
        if isinstance(node, FlattenedPrompt):
            return [w for child in node.children for w in words(child)]
        return [w for child in getattr(node, "prompts", getattr(node, "children", [])) for w in words(child)]

    conjunction = Compel.parse_prompt_string(compel_text)
    text = " ".join(w.strip() for prompt in conjunction.prompts for w in words(prompt) if w.strip())
    return re.sub(r"\s+([,.;:!?])", r"\1", text)


def _escape_plain(text: str) -> str:
    """A plain text that compel must read literally (it sits beside a weighted one)."""
    return text.replace("(", "\\(").replace(")", "\\)").replace('"', '\\"')
