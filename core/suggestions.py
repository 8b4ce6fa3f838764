"""/describe's answer: prompt suggestions for an image, as a numbered list with one button each.

A button (``describe:<n>``, :class:`SuggestionButton`, a ``DynamicItem``) runs /imagine with
suggestion *n*, which it reads back from the text of the message it is on: nothing is kept in
memory or in the database, so the buttons keep working after a restart. The message text is the
record: the bot's own messages cannot be edited by anyone else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import discord

from core import render
from core.controls import jobs_client
from core.limits import Refusal
from core.origins import InteractionOrigin
from core.tree import report_error

log = logging.getLogger(__name__)

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


class SuggestionButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=re.compile(r"describe:(?P<number>[1-9])"),
):
    """Runs /imagine with one suggestion of the message it is on."""

    def __init__(self, number: int) -> None:
        self.number = number
        super().__init__(
            discord.ui.Button(
                label=str(number), style=discord.ButtonStyle.primary, custom_id=f"describe:{number}", row=0
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SuggestionButton:
        return cls(int(match["number"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            message = interaction.message
            prompt = suggestion_from(message.content, self.number) if message is not None else None
            if prompt is None:
                raise Refusal(f"Suggestion {self.number} is not on this message any more.")
            await jobs_client(interaction).jobs.imagine(InteractionOrigin(interaction), prompt=prompt)
        except Exception as e:
            await report_error(interaction, e)


def suggestions_view(count: int) -> discord.ui.View:
    """One button per suggestion; clicks reach :class:`SuggestionButton` through the dynamic item registry."""
    view = discord.ui.View(timeout=None)
    for number in range(1, count + 1):
        view.add_item(SuggestionButton(number))
    view.stop()
    return view
