"""The one error handler for application commands and components.

Every failure a user can cause or meet ends here: it gets a short ephemeral answer (never
"The application did not respond"), and the unexpected ones are logged with the job id.
Buttons and select menus (``discord.ui.DynamicItem``) call :func:`report_error` from their
callbacks, so they share this handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import discord
from discord import app_commands

from core.echo import fit
from core.limits import Refusal

log = logging.getLogger(__name__)

PERMISSION_NAMES = {
    "manage_guild": "Manage Server",
    "manage_messages": "Manage Messages",
    "send_messages": "Send Messages",
    "attach_files": "Attach Files",
    "add_reactions": "Add Reactions",
    "read_message_history": "Read Message History",
}


def _permission_list(names: list[str]) -> str:
    return ", ".join(PERMISSION_NAMES.get(n, n.replace("_", " ").title()) for n in names)


def user_message(interaction: discord.Interaction, error: Exception) -> str:
    """What the user reads for ``error``; logs what needs a look."""
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    job_id = interaction.extras.get("job_id")
    command = interaction.command.qualified_name if interaction.command else None
    if isinstance(original, Refusal):
        return str(original)
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need the {_permission_list(error.missing_permissions)} permission for this."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need the {_permission_list(error.missing_permissions)} permission in this channel for this."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This works in a server only, not in direct messages."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.CommandSignatureMismatch):
        log.warning("command %s no longer matches what Discord sent; commands are synced on start", command)
        return "This command just changed; try again in a minute."
    if isinstance(error, app_commands.TransformerError):
        return f"{str(error.value)[:50]!r} is not a valid value here."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this here."
    if isinstance(original, discord.Forbidden):
        log.warning("Discord refused a call for command %s (job %s): %s", command, job_id, original)
        return "Discord refused me permission to do that in this channel; ask a moderator to check my permissions."
    data: Mapping[str, object] = interaction.data or {}  # a button or menu names itself by its custom id
    log.error(
        "command %s failed (job %s, user %s, channel %s)",
        command or data.get("custom_id"),
        job_id,
        interaction.user.id if interaction.user else None,
        interaction.channel_id,
        exc_info=original,
    )
    if job_id is not None:
        return f"Something went wrong on my side (job #{job_id}); it is logged. Try again in a moment."
    return "Something went wrong on my side; it is logged. Try again in a moment."


async def report_error(interaction: discord.Interaction, error: Exception) -> None:
    """Tell the user about ``error`` ephemerally, whether or not the interaction was answered yet."""
    text = fit(user_message(interaction, error))
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as e:
        # The token expired or Discord is down: nobody left to tell.
        log.warning("could not send the error message to the user: %s", e)


class ImagineTree(app_commands.CommandTree):
    """Command tree with the bot's single error handler."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)
