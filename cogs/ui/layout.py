"""Which buttons go under which message, and their custom ids: the one place both are written.

Under drafts: U1-U4 (a final of that draft), V1-V4 (variations), 🔁 (reroll) and Remix. Under finals:
Vary (subtle) / Vary (strong) (image-to-image from the final, new seed), Zoom out 1.5x / 2x and
Pan ⬅ ➡ ⬆ ⬇ (outpainting), 🔁 and Remix; where the engine has an upscaler, Upscale (subtle) /
Upscale (creative) (a 2x upscale). An upscaled final has no Upscale or Remix buttons; a ``--tile`` job
also gets "Tiled preview". Rows of a final: Vary, Upscale | Zoom out | Pan | 🔁, Remix (Discord allows
5 rows of 5 buttons). Under /describe's answer: one numbered button per suggestion.

Custom ids carry the job id (``job:<id>:u2``, ``tile:<id>``) or the suggestion's number
(``describe:<n>``); they are what messages posted long ago carry, so they never change. The views
hold plain buttons and are stopped before they are sent: a click reaches the ``DynamicItem`` whose
template matches its custom id (:mod:`cogs.ui.buttons`), after a restart too.
"""

from __future__ import annotations

import re

import discord

from core.controls import REROLL_EMOJI
from core.history import JobRecord

OUTPAINT_BUTTONS: dict[str, tuple[str | None, str | None]] = {  # action -> (label, emoji)
    "zoom15": ("Zoom out 1.5x", None),
    "zoom2": ("Zoom out 2x", None),
    "pan_left": (None, "⬅️"),
    "pan_right": (None, "➡️"),
    "pan_up": (None, "⬆️"),
    "pan_down": (None, "⬇️"),
}
VARY_BUTTONS: dict[str, str] = {"vary_subtle": "Vary (subtle)", "vary_strong": "Vary (strong)"}
UPSCALE_BUTTONS: dict[str, str] = {"upscale_subtle": "Upscale (subtle)", "upscale_creative": "Upscale (creative)"}
REROLL = "reroll"
REMIX = "remix"
FINALS = ("u1", "u2", "u3", "u4")  # U1-U4: the final of one draft
VARIATIONS = ("v1", "v2", "v3", "v4")  # V1-V4: variations of one draft
ACTIONS = (*FINALS, *VARIATIONS, REROLL, *OUTPAINT_BUTTONS, *VARY_BUTTONS, *UPSCALE_BUTTONS, REMIX)
FINAL_REROLL_ROW = 3
TILED_PREVIEW_LABEL = "Tiled preview"

# The custom ids, as templates (what a click is matched against) and as builders (what a view carries).
JOB_TEMPLATE = re.compile(
    r"job:(?P<job_id>[0-9]{1,19}):"
    r"(?P<action>u[1-4]|v[1-4]|reroll|zoom15|zoom2|pan_(?:left|right|up|down)|vary_(?:subtle|strong)"
    r"|upscale_(?:subtle|creative)|remix)"
)
TILE_TEMPLATE = re.compile(r"tile:(?P<job_id>[0-9]{1,19})")
SUGGESTION_TEMPLATE = re.compile(r"describe:(?P<number>[1-9])")


def job_custom_id(job_id: int, action: str) -> str:
    return f"job:{job_id}:{action}"


def tile_custom_id(job_id: int) -> str:
    return f"tile:{job_id}"


def suggestion_custom_id(number: int) -> str:
    return f"describe:{number}"


def job_button(job_id: int, action: str, *, row: int | None = None) -> discord.ui.Button[discord.ui.View]:
    """The button of one job action, in its usual row unless ``row`` says otherwise. ValueError for an unknown one."""
    if action not in ACTIONS:
        raise ValueError(f"unknown job action {action!r}")
    custom_id = job_custom_id(job_id, action)
    button: discord.ui.Button[discord.ui.View]
    if action == REROLL:
        button = discord.ui.Button(emoji=REROLL_EMOJI, style=discord.ButtonStyle.secondary, custom_id=custom_id, row=2)
    elif action == REMIX:
        button = discord.ui.Button(label="Remix", style=discord.ButtonStyle.secondary, custom_id=custom_id, row=2)
    elif action in VARY_BUTTONS or action in UPSCALE_BUTTONS:
        button = discord.ui.Button(
            label=VARY_BUTTONS.get(action) or UPSCALE_BUTTONS[action],
            style=discord.ButtonStyle.primary,
            custom_id=custom_id,
            row=0,
        )
    elif action in OUTPAINT_BUTTONS:
        label, emoji = OUTPAINT_BUTTONS[action]
        button = discord.ui.Button(
            label=label,
            emoji=emoji,
            style=discord.ButtonStyle.secondary,
            custom_id=custom_id,
            row=1 if action.startswith("zoom") else 2,
        )
    else:
        button = discord.ui.Button(
            label=action.upper(),
            style=discord.ButtonStyle.primary if action in FINALS else discord.ButtonStyle.secondary,
            custom_id=custom_id,
            row=0 if action in FINALS else 1,
        )
    if row is not None:  # where the message's layout wants it (🔁 goes lower on finals)
        button.row = row
    return button


def tile_button(job_id: int, *, row: int | None = None) -> discord.ui.Button[discord.ui.View]:
    return discord.ui.Button(
        label=TILED_PREVIEW_LABEL, style=discord.ButtonStyle.secondary, custom_id=tile_custom_id(job_id), row=row
    )


def suggestion_button(number: int) -> discord.ui.Button[discord.ui.View]:
    return discord.ui.Button(
        label=str(number), style=discord.ButtonStyle.primary, custom_id=suggestion_custom_id(number), row=0
    )


class Layout:
    """The buttons under the bot's messages (``core.controls.Controls``): handed to the job service by ``bot.py``."""

    def for_result(self, job: JobRecord, *, upscaler: str = "") -> discord.ui.View:
        """The buttons of a finished job; the Upscale buttons only where the engine has an ``upscaler``."""
        view = discord.ui.View(timeout=None)
        if job.kind == "draft":
            for action in (*FINALS[: job.count], *VARIATIONS[: job.count], REROLL, REMIX):
                view.add_item(job_button(job.id, action))
            if job.params.tile:
                view.add_item(tile_button(job.id, row=2))
        else:
            upscaled = job.params.upscale is not None
            upscales = tuple(UPSCALE_BUTTONS) if upscaler and not upscaled else ()
            for action in (*VARY_BUTTONS, *upscales, *OUTPAINT_BUTTONS):
                view.add_item(job_button(job.id, action))
            view.add_item(job_button(job.id, REROLL, row=FINAL_REROLL_ROW))
            if not upscaled:
                view.add_item(job_button(job.id, REMIX, row=FINAL_REROLL_ROW))
            if job.params.tile:
                view.add_item(tile_button(job.id, row=FINAL_REROLL_ROW))
        view.stop()  # nothing to listen for here: clicks reach cogs.ui.buttons through the dynamic item registry
        return view

    def for_suggestions(self, count: int) -> discord.ui.View:
        """One button per suggestion of /describe's answer."""
        view = discord.ui.View(timeout=None)
        for number in range(1, count + 1):
            view.add_item(suggestion_button(number))
        view.stop()
        return view
