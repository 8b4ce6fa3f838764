"""Member text as the bot repeats it (core/echo.py): short, escaped, quoted, without bidi controls."""

from __future__ import annotations

from core import render
from core.echo import MESSAGE_LIMIT, fit, quoted
from core.history import JobParams
from tests.core.records import job_record

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_a_right_to_left_override_in_a_prompt_does_not_reach_the_result_header():
    """U+202E in the prompt would reverse the rest of the line, the author's mention with it."""
    job = job_record(prompt=f"a fox {BIDI}\u202etxet desrever", params=JobParams())
    for text in (render.header(job), render.result_text(job), render.status_text(job, "queued")):
        assert not set(BIDI) & set(text), text
        assert text.startswith("**a fox txet desrever** — <@1>")


def test_quoted_text_is_cut_escaped_and_in_quotes():
    assert quoted("x" * 3000) == "“" + "x" * 59 + "…”"
    assert quoted("[click](https://evil.example)", 100) == "“\\[click](https://evil.example)”"
    assert quoted("<@123> <#4> <@&5> @here", 100) == "“\\<@123> \\<#4> \\<@&5> @\u200bhere”"
    assert quoted("a\n# big\n> quote", 100) == "“a # big > quote”"  # one line: no heading, no quote block
    assert quoted(f"ab{BIDI}c") == "“abc”"


def test_fit_is_the_last_guard_on_a_message_length():
    assert fit("short") == "short"
    long = fit("y" * 5000)
    assert len(long) == MESSAGE_LIMIT and long.endswith("…")
