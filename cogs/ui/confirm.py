"""The ``/forget`` confirmation: an ephemeral message with Forget everything / Cancel buttons.

A plain View with a timeout (not persistent): after a restart, or after :data:`CONFIRM_TIMEOUT_S`, its
buttons stop answering and the member runs ``/forget`` again. Only the member who asked can press them
(the message is ephemeral, so nobody else sees it; the check is there anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from core.tree import report_error

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 120.0
FORGET_ASK = (
    "This deletes everything I keep about you: all your jobs (and favourites), the images stored for them "
    "(unless another member's job still uses one), and your /prefer preferences. Your waiting and running "
    "jobs are cancelled first. Posted messages stay in their channels. This cannot be undone."
)
FORGET_CANCELLED = "Nothing was deleted."


class ForgetConfirm(discord.ui.View):
    """Confirm runs ``forget`` (its text replaces the message); Cancel keeps everything."""

    def __init__(
        self, owner_id: int, forget: Callable[[], Awaitable[str]], *, timeout: float = CONFIRM_TIMEOUT_S
    ) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self._forget = forget

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message("This confirmation is someone else's.", ephemeral=True)
        return False

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger, custom_id="forget:yes")
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[ForgetConfirm]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Forgetting…", view=None)
        try:
            text = await self._forget()
        except Exception as e:
            log.exception("forgetting member %d failed", self.owner_id)
            await report_error(interaction, e)
            return
        await interaction.edit_original_response(content=text)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="forget:no")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[ForgetConfirm]) -> None:
        self.stop()
        await interaction.response.edit_message(content=FORGET_CANCELLED, view=None)
