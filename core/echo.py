"""Member text as the bot repeats it: in refusals, result headers and lists.

Everything the bot echoes of what a member typed goes through here: bidi controls removed (they
reorder the line around them, the author's name included), markdown and mentions escaped (a masked
link ``[click](https://evil)`` shows as typed, not as a link; ``<@id>`` shows as text), one line, and
cut with an ellipsis. :func:`quoted` puts it in quotes for a refusal; :func:`fit` is the last guard
on every message: Discord refuses content over 2,000 characters, and the message would be lost.
"""

from __future__ import annotations

import re

import discord

MESSAGE_LIMIT = 2000  # Discord's limit on a message's content
ECHO_CHARS = 60  # what a refusal repeats of a member's text, at most

# Bidi controls: embeddings and overrides (U+202A-202E), isolates (U+2066-2069), the marks LRM,
# RLM (U+200E, U+200F) and ALM (U+061C). Shown in a header they reorder the author line; in a prompt
# they do nothing for the text encoder.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"<(?=[@#]|/\w)")  # <@user>, <@&role>, <#channel>, </command:id>


def strip_bidi(text: str) -> str:
    return BIDI_CONTROLS.sub("", text)


def escape(text: str) -> str:
    """Markdown and mentions escaped, bidi controls removed: shows as typed, pings and links nothing."""
    escaped = discord.utils.escape_mentions(discord.utils.escape_markdown(strip_bidi(text)))
    return _MENTION.sub(r"\\<", escaped)


def shown(text: str, limit: int) -> str:
    """``text`` on one line, escaped, cut with an ellipsis so that the escaped form fits in ``limit``."""
    flat = " ".join(strip_bidi(text).split())
    out = escape(flat)
    if len(out) <= limit:
        return out
    cut = flat[: max(0, limit - 1)]
    while cut and len(escape(cut)) > limit - 1:
        over = len(escape(cut)) - (limit - 1)
        cut = cut[: len(cut) - max(1, over // 2)]
    return escape(cut) + "…"


def quoted(text: object, limit: int = ECHO_CHARS) -> str:
    """What a member typed, as a refusal repeats it: “escaped, one line, at most ``limit`` characters…”."""
    return f"“{shown(str(text), limit)}”"


def fit(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut with an ellipsis to what Discord takes in one message (the last guard before a send)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
