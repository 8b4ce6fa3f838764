"""Buttons under a result: custom ids carry the job, rows as users expect, the registry finds them after a restart."""

from __future__ import annotations

import pytest

from cogs.ui.buttons import JobButton, SuggestionButton, TiledPreviewButton
from cogs.ui.layout import Layout
from core.history import JobMode, JobParams
from tests.core.records import job_record

controls_for = Layout().for_result


def labels_by_row(view) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.row, []).append(item.label or str(item.emoji))
    return rows


async def test_draft_controls():
    view = controls_for(job_record(id=42))
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.row, []).append(item.label or str(item.emoji))
    assert rows == {0: ["U1", "U2", "U3", "U4"], 1: ["V1", "V2", "V3", "V4"], 2: ["🔁", "Remix"]}
    assert view.is_finished()  # nothing held in memory; clicks go through the dynamic item registry
    assert len(view.to_components()) == 3


def test_final_controls():
    view = controls_for(job_record(id=43, kind="final", count=1))
    assert [item.custom_id for item in view.children] == [
        "job:43:vary_subtle",
        "job:43:vary_strong",
        "job:43:zoom15",
        "job:43:zoom2",
        "job:43:pan_left",
        "job:43:pan_right",
        "job:43:pan_up",
        "job:43:pan_down",
        "job:43:reroll",
        "job:43:remix",
    ]
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.row, []).append(item.label or str(item.emoji))
    assert rows == {
        0: ["Vary (subtle)", "Vary (strong)"],
        1: ["Zoom out 1.5x", "Zoom out 2x"],
        2: ["⬅️", "➡️", "⬆️", "⬇️"],
        3: ["🔁", "Remix"],
    }
    # Discord: at most 5 action rows of 5 buttons each.
    components = view.to_components()
    assert len(components) == 4 and all(len(row["components"]) <= 5 for row in components)


def test_a_final_offers_the_upscale_buttons_only_where_the_engine_has_an_upscaler():
    final = job_record(id=44, kind="final", count=1)
    assert "job:44:upscale_subtle" not in [item.custom_id for item in controls_for(final).children]
    view = controls_for(final, upscaler="Lanczos")
    assert labels_by_row(view)[0] == ["Vary (subtle)", "Vary (strong)", "Upscale (subtle)", "Upscale (creative)"]
    components = view.to_components()
    assert len(components) == 4 and all(len(row["components"]) <= 5 for row in components)
    # Drafts are enlarged by U1-U4, not by these.
    assert not any("upscale_" in item.custom_id for item in controls_for(job_record(id=45), upscaler="x").children)


def test_an_upscaled_final_has_no_upscale_or_remix_buttons():
    upscaled = job_record(id=46, kind="final", count=1, mode=JobMode.UPSCALE_2X, params=JobParams(upscale="subtle"))
    ids = [item.custom_id for item in controls_for(upscaled, upscaler="Lanczos").children]
    assert "job:46:vary_subtle" in ids and "job:46:reroll" in ids
    assert not [i for i in ids if i.endswith(("upscale_subtle", "upscale_creative", "remix"))]


@pytest.mark.parametrize(
    "custom_id",
    [
        "job:1:u1",
        "job:9223372036854775807:v4",
        "job:5:reroll",
        "job:5:zoom15",
        "job:5:pan_down",
        "job:5:vary_subtle",
        "job:5:vary_strong",
        "job:5:upscale_subtle",
        "job:5:upscale_creative",
        "job:5:remix",
    ],
)
def test_template_matches_what_we_send(custom_id):
    assert JobButton.__discord_ui_compiled_template__.fullmatch(custom_id)


@pytest.mark.parametrize(
    "custom_id",
    ["job:1:u5", "job:x:u1", "job:1:delete", "hist:1:1:1:", "job:1:zoom3", "job:1:pan_", "job:1:vary_wild",
     "job:1:upscale_wild", "job:1:remixes"],
)
def test_template_rejects_others(custom_id):
    assert not JobButton.__discord_ui_compiled_template__.fullmatch(custom_id)


async def test_from_custom_id_rebuilds_the_button():
    match = JobButton.__discord_ui_compiled_template__.fullmatch("job:77:u3")
    button = await JobButton.from_custom_id(None, None, match)  # type: ignore[arg-type]
    assert (button.job_id, button.action, button.custom_id) == (77, "u3", "job:77:u3")


async def test_vary_buttons_rebuild_from_their_custom_id():
    match = JobButton.__discord_ui_compiled_template__.fullmatch("job:78:vary_strong")
    button = await JobButton.from_custom_id(None, None, match)  # type: ignore[arg-type]
    assert (button.job_id, button.action, button.item.label) == (78, "vary_strong", "Vary (strong)")


@pytest.mark.parametrize(
    "job",
    [
        job_record(id=50, params=JobParams(tile=True)),
        job_record(id=51, kind="final", count=1, params=JobParams(tile=True)),
    ],
    ids=["drafts", "final"],
)
async def test_every_posted_button_is_answered_by_a_registered_item_that_looks_the_same(job):
    """A click reaches the DynamicItem whose template matches; rebuilt from the custom id, it shows the same button."""
    for posted in controls_for(job, upscaler="Lanczos").children:
        templates = [cls for cls in (JobButton, TiledPreviewButton) if cls.__discord_ui_compiled_template__.fullmatch(
            posted.custom_id
        )]
        assert len(templates) == 1, posted.custom_id
        match = templates[0].__discord_ui_compiled_template__.fullmatch(posted.custom_id)
        rebuilt = await templates[0].from_custom_id(None, None, match)  # type: ignore[arg-type]
        assert (rebuilt.item.custom_id, rebuilt.item.label, str(rebuilt.item.emoji)) == (
            posted.custom_id, posted.label, str(posted.emoji)
        )


async def test_suggestion_buttons_are_answered_by_the_suggestion_item():
    view = Layout().for_suggestions(3)
    assert [item.custom_id for item in view.children] == ["describe:1", "describe:2", "describe:3"]
    assert view.is_finished()
    for number, posted in enumerate(view.children, start=1):
        match = SuggestionButton.__discord_ui_compiled_template__.fullmatch(posted.custom_id)
        assert (await SuggestionButton.from_custom_id(None, None, match)).number == number  # type: ignore[arg-type]
