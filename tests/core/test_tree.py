"""The one error handler: a short ephemeral answer always, a log with the job id when it is our fault."""

from __future__ import annotations

import logging
from unittest.mock import create_autospec

import discord
from discord import app_commands

from core.limits import Refusal
from core.tree import ImagineTree, report_error


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


def logged(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "core.tree"]


async def test_refusal_is_sent_as_is_and_not_logged(caplog):
    it = interaction(done=False)
    command = create_autospec(app_commands.Command, instance=True)
    command.name = "imagine"
    with caplog.at_level(logging.DEBUG, logger="core.tree"):
        await report_error(it, app_commands.CommandInvokeError(command, Refusal("Seed -1 is out of range.")))
    it.response.send_message.assert_awaited_once()
    args, kwargs = it.response.send_message.await_args
    assert args == ("Seed -1 is out of range.",) and kwargs["ephemeral"] is True
    assert kwargs["allowed_mentions"].everyone is False
    assert logged(caplog) == []  # the user's own mistake: nothing for the owner to look at


async def test_unexpected_error_is_logged_with_the_job_id(caplog):
    it = interaction(done=True)
    error = RuntimeError("boom")
    with caplog.at_level(logging.DEBUG, logger="core.tree"):
        await report_error(it, error)
    assert logged(caplog) == [(logging.ERROR, "command job:12:u1 failed (job 12, user 5, channel 100)")]
    [record] = [r for r in caplog.records if r.name == "core.tree"]
    assert record.exc_info is not None and record.exc_info[1] is error  # the traceback goes with it
    args, kwargs = it.followup.send.await_args
    assert "job #12" in args[0] and kwargs["ephemeral"] is True


async def test_the_tree_sends_command_errors_to_the_same_handler(caplog):
    it = interaction(done=False)
    it.command = create_autospec(app_commands.Command, instance=True)
    it.command.name, it.command.qualified_name = "limits", "settings limits"
    tree = ImagineTree(discord.Client(intents=discord.Intents.none()))
    error = app_commands.CommandInvokeError(it.command, KeyError("max_waiting"))
    with caplog.at_level(logging.DEBUG, logger="core.tree"):
        await tree.on_error(it, error)
    assert logged(caplog) == [(logging.ERROR, "command settings limits failed (job 12, user 5, channel 100)")]
    assert it.response.send_message.await_args.args[0].startswith("Something went wrong on my side (job #12)")


async def test_missing_permission_is_named():
    it = interaction(done=False)
    await report_error(it, app_commands.MissingPermissions(["manage_guild"]))
    assert it.response.send_message.await_args.args[0] == "You need the Manage Server permission for this."


async def test_expired_token_does_not_raise_and_says_so_in_the_log(caplog):
    it = interaction(done=True)
    response = create_autospec(discord.Interaction, instance=True)  # anything with status/reason for HTTPException
    response.status, response.reason = 404, "Not Found"
    it.followup.send.side_effect = discord.NotFound(response, {"code": 10015, "message": "Unknown Webhook"})
    with caplog.at_level(logging.DEBUG, logger="core.tree"):
        await report_error(it, RuntimeError("late"))
    assert logged(caplog) == [
        (logging.ERROR, "command job:12:u1 failed (job 12, user 5, channel 100)"),
        (
            logging.WARNING,
            "could not send the error message to the user: 404 Not Found (error code: 10015): Unknown Webhook",
        ),
    ]
