"""The Remix form's custom ids and how to read a submitted one: plain values, the form itself is ``cogs.ui.remix``.

A form's custom id carries the job id (``remix:<id>``); its two text inputs are ``remix:prompt`` and
``remix:negative``. Messages and forms opened long ago carry these, so they never change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import discord

from engine.api import MAX_PROMPT_CHARS

FORM_ID = re.compile(r"remix:(?P<job_id>[0-9]{1,19})")
PROMPT_INPUT = "remix:prompt"
NEGATIVE_INPUT = "remix:negative"
# Discord's limits: a modal's title and a text input's label are at most 45 characters, a text
# input's value at most 4000 (our prompts stop at MAX_PROMPT_CHARS, well below).
TITLE_LIMIT = 45
INPUT_LIMIT = 4000
PROMPT_LIMIT = min(MAX_PROMPT_CHARS, INPUT_LIMIT)


def form_custom_id(job_id: int) -> str:
    return f"remix:{job_id}"


def form_values(components: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The text inputs of a submitted modal by custom id (in action rows, or in labels)."""
    values: dict[str, str] = {}
    for top in components:
        children = top.get("components") or ([top["component"]] if isinstance(top.get("component"), Mapping) else [])
        for child in children:
            if child.get("type") == discord.ComponentType.text_input.value and isinstance(child.get("value"), str):
                values[str(child.get("custom_id"))] = child["value"]
    return values
