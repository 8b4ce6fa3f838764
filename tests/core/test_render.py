"""What the bot writes about a job: escaped, one line of prompt, never over Discord's 2,000 characters."""

from __future__ import annotations

from core import render
from core.history import JobMode, JobParams
from tests.core.records import job_record


def test_mentions_and_markdown_are_escaped():
    text = render.result_text(job_record(prompt="@everyone @here **big** <@&123456789012345678> `code`"))
    assert "@\u200beveryone" in text and "@\u200bhere" in text
    assert "\\*\\*big\\*\\*" in text and "\\`code\\`" in text
    assert "<@&123456789012345678>" not in text


def test_longest_prompt_fits_even_when_escaping_doubles_it():
    job = job_record(prompt="*" * 1000, negative_prompt="_" * 1000)
    for text in (render.result_text(job), render.status_text(job, "⏳ Queued.")):
        assert len(text) <= render.MESSAGE_LIMIT
        assert "seed `5`" in text


def test_prompt_is_shown_on_one_line():
    assert render.shown("a\nb\n\n c", 100) == "a b c"
    assert render.shown("abcdef", 4) == "abc…"


def test_describe():
    assert render.describe(job_record(id=3)) == "Drafts · seed `5` · turbo · 512×768 · job #3"
    upscale = job_record(id=4, kind="final", mode="upscale", model="sdxl", parent_id=3, parent_index=1, count=1)
    assert render.describe(upscale, steps=30).startswith("Final of job #3 image 2 · seed `5` · sdxl · 30 steps")
    assert render.queued_state(1, 3.2) == "⏳ Queued: next in line, done about 3 s."
    assert render.queued_state(4, 200) == "⏳ Queued: position 4 in the queue, done about 3 min."


def test_describe_remixes_and_upscales():
    remix = job_record(id=5, mode=JobMode.REMIX, parent_id=3, params=JobParams(remix_of=3))
    assert render.describe(remix).startswith("Drafts (remix of job #3) · seed `5`")
    final_remix = job_record(id=6, kind="final", mode=JobMode.REMIX, model="sdxl", count=1, parent_id=4,
                             params=JobParams(remix_of=4))
    assert render.describe(final_remix, steps=4).startswith("Remix of job #4 · seed `5` · sdxl · 4 steps")
    upscaled = job_record(id=7, kind="final", mode=JobMode.UPSCALE_2X, model="sdxl", width=2048, height=2048,
                          count=1, parent_id=6, steps=None, params=JobParams(upscale="subtle"))
    line = render.describe(upscaled, steps=0)  # "subtle" redraws nothing: no steps shown
    assert line == "Upscaled 2x (subtle) from job #6 · seed `5` · sdxl · 2048×2048 · job #7"


def test_plain_states_and_engine_refusals_are_shown_as_they_are():
    from core.jobs.runner import RESTARTING_STATE
    from core.render import public_state

    for state in (
        "⏳ Queued.",
        RESTARTING_STATE,
        "✖️ Cancelled.",
        "⚠️ Failed: Out of GPU memory for this image; try a smaller size or fewer images.",
        "⚠️ The queue is full (12 jobs waiting). Try again in a few minutes.",
        "⚠️ Failed: The model produced an invalid image (NaN). Try another seed or prompt.",
        "⚠️ Failed: Nothing to repaint: use /edit with a white area in the mask, or a 16:9 image.",
        "⚠️ Failed: Model ssd-1b failed to load on this bot; its log says why. Try another model.",
    ):
        assert public_state(state, 7) == state
    assert "job #7" in public_state("⚠️ Failed: ValueError: bad /opt/x/y", 7)
