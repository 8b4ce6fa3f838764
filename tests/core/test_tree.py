"""The one error handler: a short ephemeral answer always, a log with the job id when it is our fault."""

from __future__ import annotations

import logging
from unittest.mock import create_autospec

import discord
from discord import app_commands

from core.limits import Refusal
from core.tree import report_error


def interaction(*, done: bool):
    double = create_autospec(discord.Interaction, instance=True)
    double.extras = {"job_id": 12}
    double.command = None
    double.data = {"custom_id": "job:12:u1"}
    double.user = discord.Object(5)
    double.channel_id = 100
    double.response = create_autospec(discord.InteractionResponse, instance=True)
    double.followup = create_autospec(discord.Webhook, instance=True)
    double.response.is_done.return_value = done
    return double


async def test_refusal_is_sent_as_is():
    it = interaction(done=False)
    command = create_autospec(app_commands.Command, instance=True)
    command.name = "imagine"
    await report_error(it, app_commands.CommandInvokeError(command, Refusal("Seed -1 is out of range.")))
    it.response.send_message.assert_awaited_once()
    args, kwargs = it.response.send_message.await_args
    assert args == ("Seed -1 is out of range.",) and kwargs["ephemeral"] is True
    assert kwargs["allowed_mentions"].everyone is False


async def test_unexpected_error_is_logged_with_the_job_id(caplog):
    it = interaction(done=True)
    with caplog.at_level(logging.ERROR, logger="core.tree"):
        await report_error(it, RuntimeError("boom"))
    assert "job 12" in caplog.text and "boom" in caplog.text
    args, kwargs = it.followup.send.await_args
    assert "job #12" in args[0] and kwargs["ephemeral"] is True


async def test_missing_permission_is_named():
    it = interaction(done=False)
    await report_error(it, app_commands.MissingPermissions(["manage_guild"]))
    assert it.response.send_message.await_args.args[0] == "You need the Manage Server permission for this."


async def test_expired_token_does_not_raise():
    it = interaction(done=True)
    response = create_autospec(discord.Interaction, instance=True)  # anything with status/reason for HTTPException
    response.status, response.reason = 404, "Not Found"
    it.followup.send.side_effect = discord.NotFound(response, {"code": 10015, "message": "Unknown Webhook"})
    await report_error(it, RuntimeError("late"))
