"""Job buttons: custom ids carry the job, rows as users expect, and the registry finds them after a restart."""

from __future__ import annotations

import pytest

from core.controls import JobButton, controls_for
from tests.core.test_jobs import _row


async def test_draft_controls():
    view = controls_for(_row(id=42))
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.item.row, []).append(item.item.label or str(item.item.emoji))
    assert rows == {0: ["U1", "U2", "U3", "U4"], 1: ["V1", "V2", "V3", "V4"], 2: ["🔁"]}
    assert view.is_finished()  # nothing held in memory; clicks go through the dynamic item registry
    assert len(view.to_components()) == 3


def test_final_controls():
    view = controls_for(_row(id=43, kind="final", count=1))
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
    ]
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.item.row, []).append(item.item.label or str(item.item.emoji))
    assert rows == {
        0: ["Vary (subtle)", "Vary (strong)"],
        1: ["Zoom out 1.5x", "Zoom out 2x"],
        2: ["⬅️", "➡️", "⬆️", "⬇️"],
        3: ["🔁"],
    }
    # Discord: at most 5 action rows of 5 buttons each.
    components = view.to_components()
    assert len(components) == 4 and all(len(row["components"]) <= 5 for row in components)


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
    ],
)
def test_template_matches_what_we_send(custom_id):
    assert JobButton.__discord_ui_compiled_template__.fullmatch(custom_id)


@pytest.mark.parametrize(
    "custom_id",
    ["job:1:u5", "job:x:u1", "job:1:delete", "hist:1:1:1:", "job:1:zoom3", "job:1:pan_", "job:1:vary_wild"],
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
