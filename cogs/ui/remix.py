"""The Remix form: a job's prompt and negative prompt in a Discord modal, edited and submitted as a new job.

The Remix button (``cogs.ui.buttons``) opens :class:`RemixForm`; its custom id carries the job id
(``remix:<id>``, ``core.remix``) and, as with the buttons, nothing is kept in memory: the form is
stopped before it is sent, so discord.py holds no modal for it and discards the submit, which
:func:`remix_submitted` (called by ``cogs.imagine`` for every interaction) takes from there. A form
opened before a restart is therefore still submitted after it, and the service rebuilds everything
else from the job's row. Like the button, a submit counts only from the job's result message (the
message the form was opened from) and passes the same checks as the button (``JobService.remix``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import discord

from cogs.ui.client import require_result_message
from core.history import JobRecord
from core.jobs import JobService
from core.origins import InteractionOrigin
from core.remix import FORM_ID, NEGATIVE_INPUT, PROMPT_INPUT, PROMPT_LIMIT, TITLE_LIMIT, form_custom_id, form_values
from core.tree import report_error

log = logging.getLogger(__name__)


class RemixForm(discord.ui.Modal):
    """The prompt and negative prompt of ``job``, filled in; never held in memory (see the module docstring)."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(title=f"Remix job #{job.id}"[:TITLE_LIMIT], custom_id=form_custom_id(job.id), timeout=None)
        self.prompt: discord.ui.TextInput[RemixForm] = discord.ui.TextInput(
            label="Prompt",
            style=discord.TextStyle.paragraph,
            custom_id=PROMPT_INPUT,
            default=job.prompt[:PROMPT_LIMIT],
            max_length=PROMPT_LIMIT,
            required=True,
        )
        self.negative_prompt: discord.ui.TextInput[RemixForm] = discord.ui.TextInput(
            label="Negative prompt (what to keep out)",
            style=discord.TextStyle.paragraph,
            custom_id=NEGATIVE_INPUT,
            default=job.negative_prompt[:PROMPT_LIMIT] or None,
            max_length=PROMPT_LIMIT,
            required=False,
        )
        self.add_item(self.prompt)
        self.add_item(self.negative_prompt)
        # Nothing to listen for in this object: the submit reaches remix_submitted through on_interaction.
        self.stop()


async def remix_submitted(interaction: discord.Interaction, jobs: JobService) -> bool:
    """Make the remix of a submitted Remix form; False when ``interaction`` is no such submit."""
    if interaction.type is not discord.InteractionType.modal_submit:
        return False
    data: Mapping[str, Any] = interaction.data or {}
    match = FORM_ID.fullmatch(str(data.get("custom_id", "")))
    if match is None:
        return False
    job_id = int(match["job_id"])
    values = form_values(data.get("components") or [])
    log.info("remix of job %s submitted by user %s", job_id, interaction.user.id)
    try:
        # As its button: the form counts only when opened from the job's own result (interaction.message).
        await require_result_message(
            interaction,
            job_id,
            f"This form was not opened from the result of job #{job_id}; use the Remix button under that result.",
        )
        await jobs.remix(
            InteractionOrigin(interaction),
            job_id,
            prompt=values.get(PROMPT_INPUT, ""),
            negative_prompt=values.get(NEGATIVE_INPUT) or None,
        )
    except Exception as e:
        interaction.extras.setdefault("job_id", job_id)
        await report_error(interaction, e)
    return True
