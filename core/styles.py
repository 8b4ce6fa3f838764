"""Style presets: named prompt suffixes and negative prompts that members pick with ``/imagine style:``.

Pure (no I/O): the bot's defaults, the checks on a name and its texts, the styles a server offers,
the autocomplete filter and the one place a style is applied to a prompt.

**Defaults and servers.** The bot ships :data:`DEFAULT_STYLES`, offered in every server. A server's
admins (Manage Server) add styles of their own with ``/settings style add``; one with a default's
name *replaces* that default in that server. ``/settings style remove`` deletes a server's own style
and *hides* a default (a row with ``hidden``), so a removed name is unknown there afterwards, even a
default's; ``/settings style add`` with a default's name and no suffix brings the bot's version back.
The rows live in ``guild_styles`` (``core/migrations/0004_styles.sql``), read through
:class:`core.history.GuildStyle`.

**Applying one** (:func:`apply_style`, called by ``core.jobs.preferences.apply_prefs``): a chosen style
takes the place of the member's own ``/prefer`` style suffix (one look per prompt: two suffixes pull
apart); its suffix is appended to the prompt (not twice), and its negative prompt is joined to the
negative prompt given or preferred. The job row stores the effective prompt and negative prompt and
names the style (``params.style``), so 🔁, U, V and ``/show`` repeat the same text and never apply
the style again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.echo import quoted
from core.history import GuildStyle
from core.limits import STYLE_SEPARATOR, Refusal, check_negative_prompt, check_prompt, check_style_suffix
from core.prompt_text import MAX_STYLE_NAME_CHARS
from engine.api import MAX_PROMPT_CHARS

MAX_GUILD_STYLES = 100  # a server's own rows (styles, replacements, removals)
MAX_CHOICES = 25  # what Discord shows of an autocomplete answer
KNOWN_SHOWN = 8  # styles named in the refusal of an unknown one

_NAME = re.compile(r"[^\W_][\w-]*")


@dataclass(frozen=True)
class Style:
    """A style a server offers: its name, the suffix added to prompts and the negative prompt it adds."""

    name: str
    prompt_suffix: str
    negative_prompt: str = ""
    default: bool = False  # the bot's own (not replaced by the server)


DEFAULT_STYLES: tuple[Style, ...] = tuple(
    Style(name, suffix, negative, default=True)
    for name, suffix, negative in (
        (
            "photo",
            "photograph, 35mm, natural light, sharp focus, highly detailed",
            "illustration, painting, drawing, cartoon, anime, 3d render, blurry",
        ),
        (
            "anime",
            "anime style, cel shading, vibrant colors, clean line art, detailed background",
            "photo, photorealistic, realistic, 3d render, blurry, lowres",
        ),
        (
            "watercolor",
            "watercolor painting, soft washes, visible paper texture, delicate brush strokes",
            "photo, photorealistic, 3d render, hard edges, digital art",
        ),
        (
            "cinematic",
            "cinematic film still, dramatic lighting, shallow depth of field, anamorphic, film grain",
            "cartoon, anime, illustration, painting, flat lighting, lowres",
        ),
        (
            "pixel-art",
            "pixel art, 16-bit, crisp pixels, limited palette",
            "blurry, smooth shading, photo, photorealistic, 3d render, anti-aliasing",
        ),
        (
            "line-art",
            "line art, black ink on white paper, clean lines, minimalist",
            "color, shading, photo, photorealistic, gradient, blurry",
        ),
        (
            "oil-painting",
            "oil painting, thick impasto brush strokes, canvas texture, rich colors",
            "photo, photorealistic, 3d render, digital art, flat colors",
        ),
        (
            "3d-render",
            "3d render, octane render, soft global illumination, subsurface scattering, highly detailed",
            "photo, painting, drawing, sketch, flat, lowres",
        ),
    )
)
_DEFAULTS = {style.name: style for style in DEFAULT_STYLES}


def default_style(name: str) -> Style | None:
    """The bot's own style of this (checked) name, if it ships one."""
    return _DEFAULTS.get(name)


def check_style_name(name: object) -> str:
    """A style name, lower case: one word of letters, digits, ``-`` and ``_``. Raises Refusal."""
    if not isinstance(name, str) or not name.strip():
        raise Refusal("Give the style a name, like pixel-art.")
    cleaned = name.strip().lower()
    if len(cleaned) > MAX_STYLE_NAME_CHARS:
        raise Refusal(f"A style name is at most {MAX_STYLE_NAME_CHARS} characters; that one has {len(cleaned)}.")
    if not _NAME.fullmatch(cleaned):
        raise Refusal(
            "A style name is one word of letters, digits, - and _ (like pixel-art), starting with a letter or digit."
        )
    return cleaned


def check_style_texts(prompt_suffix: object, negative_prompt: object) -> tuple[str, str]:
    """A style's suffix (required) and negative prompt (may be empty), cleaned. Raises Refusal."""
    suffix = check_style_suffix(prompt_suffix)
    if suffix is None:
        raise Refusal("A style needs a prompt_suffix: the words it adds to every prompt, like “watercolor painting”.")
    return suffix, check_negative_prompt(negative_prompt)


def server_styles(rows: Iterable[GuildStyle]) -> tuple[Style, ...]:
    """The styles a server offers, by name: the defaults it did not hide or replace, and its own."""
    styles = dict(_DEFAULTS)
    for row in rows:
        if row.hidden:
            styles.pop(row.name, None)
        else:
            styles[row.name] = Style(row.name, row.prompt_suffix, row.negative_prompt)
    return tuple(styles[name] for name in sorted(styles))


def unknown_style(name: str, styles: Iterable[Style]) -> Refusal:
    """The refusal of a style name this server does not offer, naming a few it does."""
    known = [style.name for style in styles]
    if not known:
        return Refusal(f"There is no style {quoted(name, 40)} on this server, and it offers none.")
    listed = ", ".join(known[:KNOWN_SHOWN]) + (", …" if len(known) > KNOWN_SHOWN else "")
    return Refusal(f"There is no style {quoted(name, 40)} on this server. Styles here: {listed}.")


def matching(styles: Iterable[Style], typed: str, limit: int = MAX_CHOICES) -> list[Style]:
    """The styles for what a member has typed so far: names that start with it, then names containing it."""
    text = typed.strip().lower()
    ordered = list(styles)
    starts = [s for s in ordered if s.name.startswith(text)]
    contains = [s for s in ordered if text in s.name and s not in starts]
    return (starts + contains)[:limit]


def choice_label(style: Style) -> str:
    """What an autocomplete choice shows (Discord allows 100 characters)."""
    label = f"{style.name}: {style.prompt_suffix}"
    return label if len(label) <= 100 else label[:99] + "…"


def apply_style(
    prompt: str,
    negative_prompt: str,
    style: Style,
    *,
    blocked_words: Iterable[str] = (),
    age_restricted: bool = False,
) -> tuple[str, str]:
    """``prompt`` and ``negative_prompt`` (both checked) with ``style`` applied. Raises Refusal.

    Neither text gets the style's text a second time (a prompt copied from a styled result); the longer
    prompt is held to the server's blocked words, and both to the prompt length.
    """
    prompt = _joined(prompt, style.prompt_suffix, style.name, "prompt")
    check_prompt(prompt, blocked_words=blocked_words, age_restricted=age_restricted)
    negative = _joined(negative_prompt, style.negative_prompt, style.name, "negative prompt")
    return prompt, negative


def _joined(text: str, addition: str, name: str, what: str) -> str:
    if not addition or text.casefold().rstrip(" ,;.").endswith(addition.casefold()):
        return text
    if not text.strip(" ,;"):
        return addition
    joined = f"{text.rstrip(' ,;')}{STYLE_SEPARATOR}{addition}"
    if len(joined) > MAX_PROMPT_CHARS:
        raise Refusal(
            f"Your {what} with the style `{name}` is {len(joined):,} characters long; the limit is "
            f"{MAX_PROMPT_CHARS:,}. Shorten it, or leave the style out."
        )
    return joined
