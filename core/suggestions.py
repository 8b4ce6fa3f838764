"""/describe's answer: prompt suggestions for an image, as a numbered list (the buttons are ``cogs.ui``).

A button (``describe:<n>``, ``cogs.ui.buttons.SuggestionButton``) runs /imagine with suggestion *n*,
which it reads back from the text of the message it is on (:func:`suggestion_from`): nothing is kept
in memory or in the database, so the buttons keep working after a restart. The message text is the
record: the bot's own messages cannot be edited by anyone else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core import render

MAX_SUGGESTIONS = 4
SUGGESTION_CHARS = 300  # each line of the list; four fit well inside a message
_LINE = re.compile(r"^(?P<n>[1-9])\. (?P<text>.+)$", re.MULTILINE)
_ESCAPED = re.compile(r"\\(.)")


def clean(suggestions: Sequence[str]) -> list[str]:
    """The suggestions worth showing: one line each, no empty or repeated ones, at most four."""
    out: list[str] = []
    for text in suggestions:
        line = " ".join(str(text).split())[:SUGGESTION_CHARS]
        if line and line not in out:
            out.append(line)
    return out[:MAX_SUGGESTIONS]


def suggestions_text(suggestions: Sequence[str], user_id: int) -> str:
    """The message: who asked, then ``1. ...`` per suggestion (escaped), then what the buttons do."""
    lines = [f"🔎 Prompts for the image of <@{user_id}>:"]
    lines += [f"{n}. {render.escape(text)}" for n, text in enumerate(suggestions, start=1)]
    lines.append("Press a number to make four drafts of that prompt.")
    return "\n".join(lines)


def suggestion_from(content: str, number: int) -> str | None:
    """Suggestion ``number`` (1-based) as :func:`suggestions_text` wrote it in ``content``, unescaped; or None."""
    for match in _LINE.finditer(content):
        if int(match["n"]) == number:
            return _ESCAPED.sub(r"\1", match["text"]).replace("@\u200b", "@")
    return None
