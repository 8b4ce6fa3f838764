"""What people type after the prompt: ``--ar 16:9 --seed 5 --no trees``, and ``{red, blue}`` permutations.

Pure functions, no I/O. :func:`expand_permutations` turns one text into the texts it stands for
(``a {red, blue} car`` -> ``a red car``, ``a blue car``); :func:`split_parameters` takes the
Midjourney-style parameters off the end of each. Both raise :class:`core.limits.Refusal` with a
message that names what is wrong, so a slash command, a button and an image channel all answer
the same way. Slash options win over parameters in the text: the caller merges them
(:meth:`PromptParams.merged_with`; the add-on picks ``--lora --iw --sref`` in ``core.jobs.addons``,
which also checks their ranges against the engine's offer).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from engine.api import ASPECTS, FINAL_MODELS, LORA_WEIGHT_RANGE, MAX_LORAS, MAX_SEED, REFERENCE_WEIGHT_RANGE

from .echo import quoted, shown
from .limits import Refusal

MAX_CHAOS = 100
MAX_STYLE_NAME_CHARS = 50

# A parameter starts with "--" (or the "—" a phone's keyboard makes of it) right after a space or
# at the start, followed by a letter: "a -- b" and "x--y" stay part of the prompt.
_PARAM = re.compile(r"(?:(?<=\s)|^)(?:--|\u2014)([A-Za-z][\w-]*)")

# name -> the field it fills; aliases share a field.
_NAMES = {
    "ar": "aspect",
    "aspect": "aspect",
    "seed": "seed",
    "no": "negative",
    "steps": "steps",
    "chaos": "chaos",
    "c": "chaos",
    "tile": "tile",
    "style": "style",
    "model": "model",
    "lora": "loras",
    "iw": "reference_weight",
    "sref": "reference_style",
}
_CRAFT_SHOWN = ("--ar W:H", "--seed N", "--no words", "--steps N", "--chaos 0-100", "--tile", "--style NAME", "--model")
_SHOWN = (*_CRAFT_SHOWN, "--lora NAME[:WEIGHT]", "--iw WEIGHT", "--sref")
# A weight as people type it: 0.8, -1, .5 (no exponents, no nan or inf).
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class PromptParams:
    """A prompt with the parameters typed after it; ``None`` means "not given"."""

    prompt: str
    aspect: str | None = None
    seed: int | None = None
    negative: str | None = None
    steps: int | None = None
    chaos: int | None = None
    tile: bool | None = None
    style: str | None = None
    model: str | None = None
    loras: tuple[tuple[str, float | None], ...] | None = None  # (name, weight or None: the default)
    reference_weight: float | None = None  # --iw
    reference_style: bool | None = None  # --sref: the reference image lends its style only

    def merged_with(
        self,
        *,
        aspect: str | None = None,
        seed: int | None = None,
        negative: str | None = None,
        steps: int | None = None,
        chaos: int | None = None,
        tile: bool | None = None,
        style: str | None = None,
        model: str | None = None,
    ) -> PromptParams:
        """These parameters with the slash command's options laid over them (an option given wins)."""
        return PromptParams(
            prompt=self.prompt,
            aspect=self.aspect if aspect is None else aspect,
            seed=self.seed if seed is None else seed,
            negative=self.negative if negative is None else negative,
            steps=self.steps if steps is None else steps,
            chaos=self.chaos if chaos is None else chaos,
            tile=self.tile if tile is None else tile,
            style=self.style if style is None else style,
            model=self.model if model is None else model,
        )

    def recorded(self) -> dict[str, object]:
        """The parameters that were given (for the job row), without the prompt."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prompt"}
        return {name: value for name, value in given.items() if value is not None}


def help_text() -> str:
    """A few lines for /help and command descriptions."""
    (lora_low, lora_high), (iw_low, iw_high) = LORA_WEIGHT_RANGE, REFERENCE_WEIGHT_RANGE
    return (
        "After the prompt: " + ", ".join(_CRAFT_SHOWN) + "; {a, b} makes one job per choice.\n"
        f"When the bot has LoRAs: --lora NAME[:WEIGHT] (weight {lora_low:g} to {lora_high:g}; up to {MAX_LORAS}, "
        "comma separated: --lora pixel-art:0.8, ink).\n"
        "When it has an image reference model, with an image attached: --iw WEIGHT (how strongly the image "
        f"acts, {iw_low:g} to {iw_high:g}) and --sref (borrow its style only)."
    )


def split_parameters(text: str) -> PromptParams:
    """The prompt before the first ``--name`` and the parameters after it, checked."""
    matches = list(_PARAM.finditer(text))
    if not matches:
        return PromptParams(prompt=text.strip())
    params = PromptParams(prompt=text[: matches[0].start()].strip())
    seen: dict[str, str] = {}
    for i, match in enumerate(matches):
        name = match.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        raw = text[match.end() : end].strip()
        field_name = _NAMES.get(name)
        if field_name is None:
            raise Refusal(f"I don't know the parameter “--{shown(name, 40)}”. I understand {', '.join(_SHOWN)}.")
        if field_name in seen:
            also = "" if seen[field_name] == name else f" (as --{seen[field_name]} too)"
            once = "put both after one --lora, comma separated" if field_name == "loras" else "give it once"
            raise Refusal(f"--{name} is given twice{also}; {once}.")
        seen[field_name] = name
        params = _PARSERS[field_name](params, name, raw)
    return params


def expand_permutations(text: str, limit: int) -> list[str]:
    """Every text that ``{a, b}`` groups stand for, in order; ``\\{`` and ``\\}`` are literal braces.

    Refuses unbalanced or nested braces, empty groups and more than ``limit`` combinations.
    """
    parts: list[list[str]] = []  # fixed text and groups of choices, alternating
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            literal.append(text[i + 1])
            i += 2
            continue
        if ch == "}":
            raise Refusal("Your prompt has a “}” without a “{” before it (write \\} for a brace).")
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        close = _closing_brace(text, i)
        body = text[i + 1 : close].replace("\\{", "{").replace("\\}", "}")
        choices = [c.strip() for c in body.split(",")]
        if any(not c for c in choices):
            raise Refusal(f"The choices {quoted('{' + body + '}')} have an empty one; write them as {{red, blue}}.")
        parts.append(["".join(literal)])
        parts.append(choices)
        literal = []
        i = close + 1
    parts.append(["".join(literal)])
    count = math.prod(len(p) for p in parts)
    if count > limit:
        raise Refusal(f"Your prompt makes {count} combinations; the most I make at once is {limit}.")
    texts = []
    for combo in itertools.product(*parts):
        texts.append(re.sub(r"[ \t]{2,}", " ", "".join(combo)).strip())
    return list(dict.fromkeys(texts))  # "{a, a}" makes one job, not two


def _closing_brace(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            i += 2
            continue
        if ch == "{":
            raise Refusal("Choices can't be nested: write {red, blue} {car, bike}, not {red {car, bike}}.")
        if ch == "}":
            return i
        i += 1
    raise Refusal("Your prompt has a “{” that is never closed; write choices as {red, blue}.")


# --------------------------------------------------------------------------- one parser per parameter


def _need_value(name: str, raw: str, example: str) -> str:
    if not raw:
        raise Refusal(f"--{name} needs a value, e.g. --{name} {example}.")
    return raw


def _integer(name: str, raw: str, low: int, high: int, example: str) -> int:
    raw = _need_value(name, raw, example)
    try:
        value = int(raw)
    except ValueError:
        raise Refusal(f"--{name} takes a whole number from {low} to {high}, not {quoted(raw, 40)}.") from None
    if not (low <= value <= high):
        raise Refusal(f"--{name} must be {low} to {high}, not {quoted(raw, 40)}.")
    return value


def _aspect(name: str, raw: str) -> str:
    raw = _need_value(name, raw, "16:9")
    match = re.fullmatch(r"(\d{1,4})\s*[:x×]\s*(\d{1,4})", raw)
    if not match or not int(match.group(1)) or not int(match.group(2)):
        raise Refusal(f"--{name} takes a ratio like 16:9, not {quoted(raw, 40)}.")
    w, h = int(match.group(1)), int(match.group(2))
    g = math.gcd(w, h)
    aspect = f"{w // g}:{h // g}"
    if aspect not in ASPECTS:
        raise Refusal(f"--{name} {quoted(raw, 40)}: I make {', '.join(ASPECTS)}.")
    return aspect


def _negative(name: str, raw: str) -> str:
    raw = _need_value(name, raw, "trees, people")
    words = [w.strip() for w in raw.split(",") if w.strip()]
    return ", ".join(words)


def _flag(name: str, raw: str) -> bool:
    if raw:
        raise Refusal(f"--{name} takes no value ({quoted(raw, 40)} follows it); put it after the prompt on its own.")
    return True


def _number(name: str, raw: str, example: str) -> float:
    """A decimal number; its range is the add-on check's (``core.jobs.addons``), which knows the option."""
    if not _DECIMAL.fullmatch(raw):
        raise Refusal(f"--{name} takes a number, e.g. --{name} {example}, not {quoted(raw, 40)}.")
    return float(raw) + 0.0  # "-0" is 0


def _loras(name: str, raw: str) -> tuple[tuple[str, float | None], ...]:
    """``pixel-art:0.8, ink``: names with an optional weight after the last colon.

    LoRA names are file stems, which may hold ":" themselves: what follows the last colon is a weight only
    when it is a number (``style:v2`` is a name; the add-on check refuses an unknown one, hinting at the weight).
    """
    raw = _need_value(name, raw, "pixel-art:0.8")
    picks: list[tuple[str, float | None]] = []
    for item in (part.strip() for part in raw.split(",")):
        label, colon, weight = item.rpartition(":")
        if not _DECIMAL.fullmatch(weight.strip()):
            label, weight = (item if label.strip() or not colon else ""), ""
        label, weight = label.strip(), weight.strip()
        if not label:
            raise Refusal(f"--{name} {quoted(raw)} has a pick without a name; write --{name} pixel-art:0.8, ink.")
        picks.append((label, float(weight) + 0.0 if weight else None))
    return tuple(picks)


def _style(name: str, raw: str) -> str:
    raw = _need_value(name, raw, "watercolor")
    if len(raw) > MAX_STYLE_NAME_CHARS:
        raise Refusal(f"--{name} names a style of at most {MAX_STYLE_NAME_CHARS} characters.")
    return raw.lower()


def _model(name: str, raw: str) -> str:
    raw = _need_value(name, raw, FINAL_MODELS[0]).lower()
    aliases = {"ssd1b": "ssd-1b", "ssd": "ssd-1b", "sdxl-base": "sdxl", "xl": "sdxl"}
    model = aliases.get(raw, raw)
    if model not in FINAL_MODELS:
        raise Refusal(f"--{name} {quoted(raw, 40)}: the final models are {', '.join(FINAL_MODELS)}.")
    return model


# field -> (params so far, the name as typed, its raw value) -> params with that field set.
_PARSERS: dict[str, Callable[[PromptParams, str, str], PromptParams]] = {
    "aspect": lambda p, name, raw: replace(p, aspect=_aspect(name, raw)),
    "seed": lambda p, name, raw: replace(p, seed=_integer(name, raw, 0, MAX_SEED, "5")),
    "negative": lambda p, name, raw: replace(p, negative=_negative(name, raw)),
    "steps": lambda p, name, raw: replace(p, steps=_integer(name, raw, 1, 100, "4")),
    "chaos": lambda p, name, raw: replace(p, chaos=_integer(name, raw, 0, MAX_CHAOS, "50")),
    "tile": lambda p, name, raw: replace(p, tile=_flag(name, raw)),
    "style": lambda p, name, raw: replace(p, style=_style(name, raw)),
    "model": lambda p, name, raw: replace(p, model=_model(name, raw)),
    "loras": lambda p, name, raw: replace(p, loras=_loras(name, raw)),
    "reference_weight": lambda p, name, raw: replace(
        p, reference_weight=_number(name, _need_value(name, raw, "0.5"), "0.5")
    ),
    "reference_style": lambda p, name, raw: replace(p, reference_style=_flag(name, raw)),
}
