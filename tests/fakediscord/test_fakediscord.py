"""The loopback Discord against a small discord.py bot running in the test's own event loop.

These tests prove the fake is good enough for the real bot: start-up and command sync, slash commands
with a deferred answer and a PNG follow-up, buttons, reactions, a dropped gateway resumed, a 429 retried,
an expired token surfacing as ``discord.NotFound``.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import aiohttp
import discord
import pytest

from tests.fakediscord import BotProcess, CommandUnavailable, FakeDiscord, StoredMessage, Upload
from tests.fakediscord.minibot import MiniBot, png_bytes
from tests.fakediscord.permissions import MANAGE_GUILD, MANAGE_MESSAGES
from tests.fakediscord.records import CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE


async def test_startup_syncs_commands_and_fills_the_cache(fake: FakeDiscord, bot: MiniBot) -> None:
    world = fake.world
    assert [call.path for call in fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    assert {command["name"] for command in fake.synced_commands()} == {
        "draw", "react", "slow", "sleepy", "inspect", "name", "purge", "style"
    }
    assert [command["name"] for command in fake.synced_commands(world.guild)] == ["ping"]
    assert all(command["application_id"] == fake.application_id for command in fake.synced_commands())
    assert fake.gateway.identifies[0]["intents"] & (1 << 15), "message content intent requested"
    assert fake.gateway.connections[0].query["compress"] == "zlib-stream"

    assert bot.user is not None and str(bot.user.id) == world.bot.id
    guild = bot.get_guild(int(world.guild.id))
    assert guild is not None and guild.owner_id == int(world.owner.id)
    general = bot.get_channel(int(world.general.id))
    nsfw = bot.get_channel(int(world.nsfw.id))
    assert isinstance(general, discord.TextChannel) and not general.nsfw
    assert isinstance(nsfw, discord.TextChannel) and nsfw.is_nsfw()
    assert guild.get_member(int(world.alice.id)) is None, "no members intent: only the bot's member is sent"
    moderator = await guild.fetch_member(int(world.moderator.id))
    assert moderator.guild_permissions.manage_guild
    role = guild.get_role(int(world.moderator_role.id))
    assert role is not None and role.permissions.value == MANAGE_GUILD | MANAGE_MESSAGES
    readonly = bot.get_channel(int(world.readonly.id))
    assert isinstance(readonly, discord.TextChannel)
    assert not readonly.permissions_for(guild.me).send_messages
    assert general.permissions_for(guild.me).attach_files


async def test_slash_defer_then_png_followup_then_button(fake: FakeDiscord, bot: MiniBot) -> None:
    interaction = await fake.slash("draw", {"prompt": "squares", "count": 2})
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    assert interaction.callback_delay is not None and interaction.callback_delay < 3.0

    [message] = await interaction.wait_messages(lambda messages: len(messages) == 1)
    # Discord: the first follow-up after a type-5 defer edits the "thinking" message.
    assert interaction.first_followup_edited_original and message is interaction.original
    assert message.content == "**squares**"
    assert [attachment.filename for attachment in message.attachments] == ["draw_0.png", "draw_1.png"]
    assert [image.size for image in message.images()] == [(64, 48), (64, 48)]
    assert message.images()[1].getpixel((0, 0)) == (60, 100, 200)
    assert message.custom_ids() == ["draw:again"]

    [post] = fake.calls_to("POST", r"^/webhooks/")
    assert post.query["wait"] == "1" and not post.authorized
    assert [name for name, _ in post.files] == ["draw_0.png", "draw_1.png"]

    async with aiohttp.ClientSession() as session, session.get(message.attachments[0].url) as response:
        assert response.status == 200
        assert await response.read() == message.attachments[0].data

    click = await fake.click(message, "draw:again")
    assert await click.wait_callback() == UPDATE_MESSAGE
    await fake.wait_for(lambda: message.content == "again!")
    assert message.components == [] and message.edit_count == 2
    assert [attachment.filename for attachment in message.attachments] == ["draw_0.png", "draw_1.png"]


async def test_reactions_and_messages_reach_the_bot(fake: FakeDiscord, bot: MiniBot) -> None:
    interaction = await fake.slash("react")
    assert await interaction.wait_callback() == CHANNEL_MESSAGE
    answer = await interaction.wait_original()
    assert answer.content == "reacting"
    await fake.wait_for(lambda: answer.reactions.get("\N{THUMBS UP SIGN}") == [fake.bot_user.id])
    # Discord echoes the bot's own reaction back to it.
    await fake.wait_for(lambda: any(str(event.user_id) == fake.bot_user.id for event in bot.raw_reactions))

    await fake.react(answer, "\N{ARTIST PALETTE}", fake.world.bob)
    event = await fake.wait_for(
        lambda: next((event for event in bot.raw_reactions if str(event.user_id) == fake.world.bob.id), None)
    )
    assert str(event.message_id) == answer.id and event.emoji.name == "\N{ARTIST PALETTE}"
    assert event.member is not None and event.member.name == "bob"

    said = await fake.say(fake.world.general, "hello bot", attachments=[Upload("in.png", png_bytes((1, 2, 3)))])
    seen = await fake.wait_for(lambda: next((m for m in bot.seen_messages if str(m.id) == said.id), None))
    assert seen.content == "hello bot" and seen.attachments[0].filename == "in.png"
    assert await seen.attachments[0].read() == said.attachments[0].data


async def test_guild_command_ephemeral_answer(fake: FakeDiscord, bot: MiniBot) -> None:
    interaction = await fake.slash("ping", user=fake.world.moderator)
    answer = await interaction.wait_original()
    assert answer.content == "pong" and answer.ephemeral
    assert interaction.data["guild_id"] == fake.world.guild.id


@pytest.mark.parametrize("code", [4000, None], ids=["close-4000", "tcp-abort"])
async def test_gateway_drop_resumes_and_replays(fake: FakeDiscord, bot: MiniBot, code: int | None) -> None:
    await fake.drop_gateway(code=code)
    assert not fake.gateway.connected
    interaction = await fake.slash("ping")  # sent while the socket is down: replayed on RESUME
    await fake.wait_gateway_ready(resumes=1)
    assert await interaction.wait_callback() == CHANNEL_MESSAGE
    [resume] = fake.gateway.resumes
    assert resume.ok and resume.replayed == 1
    assert fake.gateway.connections[-1].path == "/gateway/resume"
    assert len(fake.gateway.identifies) == 1
    await fake.wait_for(lambda: bot.resumed_count == 1)

    after = await fake.slash("ping")
    assert (await after.wait_original()).content == "pong"


async def test_unresumable_drop_makes_the_client_identify_again(fake: FakeDiscord, bot: MiniBot) -> None:
    await fake.drop_gateway(resumable=False)
    await fake.wait_gateway_ready(identifies=2)
    assert [resume.ok for resume in fake.gateway.resumes] == [False]
    interaction = await fake.slash("ping")
    assert (await interaction.wait_original()).content == "pong"


async def test_rate_limited_followup_is_retried(fake: FakeDiscord, bot: MiniBot) -> None:
    fault = fake.fail_next("POST", r"^/webhooks/\d+/[^/]+$", status=429, retry_after=0.25)
    interaction = await fake.slash("draw", {"prompt": "again"})
    [message] = await interaction.wait_messages(lambda messages: len(messages) == 1)
    assert len(message.attachments) == 1
    first, second = fake.calls_to("POST", r"^/webhooks/")
    assert (first.status, first.fault, second.status) == (429, True, 200)
    assert second.at - first.at >= 0.25
    assert first.files == second.files and fault.remaining == 0


async def test_server_error_is_retried(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.fail_next("POST", r"/channels/\d+/messages$", status=502)
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hi")  # discord.py sleeps 1 s, then retries
    assert [call.status for call in fake.calls_to("POST", r"/messages$")] == [502, 200]
    assert fake.message(str(sent.id)).content == "hi"


async def test_expired_token_surfaces_as_not_found(fake: FakeDiscord, bot: MiniBot) -> None:
    interaction = await fake.slash("slow")
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    fake.expire_token(interaction.token)
    bot.release.set()
    await fake.wait_for(lambda: bot.caught)
    [error] = bot.caught
    assert isinstance(error, discord.NotFound) and error.code == 10015 and error.status == 404
    assert interaction.messages() == []


async def test_late_acknowledgement_is_refused_and_recorded(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.callback_deadline = 0.2
    interaction = await fake.slash("sleepy")
    await fake.wait_for(lambda: bot.caught)
    assert bot.caught[0].code == 10062 and interaction.callback_type is None
    assert [error.kind for error in fake.take_errors()] == ["interaction_timeout"]


async def test_invalid_requests_are_refused_and_recorded(fake: FakeDiscord, bot: MiniBot) -> None:
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.code == 50035
    readonly = bot.get_channel(int(fake.world.readonly.id))
    assert isinstance(readonly, discord.TextChannel)
    with pytest.raises(discord.Forbidden):
        await readonly.send("not here")
    async with aiohttp.ClientSession() as session, session.get(f"{fake.api_base}/nowhere") as response:
        assert response.status == 404
    assert [error.kind for error in fake.take_errors()] == ["invalid_body", "unknown_route"]


async def test_channel_messages_replies_edits_and_deletes(fake: FakeDiscord, bot: MiniBot) -> None:
    question = await fake.say(content="draw me something", user=fake.world.alice)
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    reply = await (await channel.fetch_message(int(question.id))).reply(
        "sure", file=discord.File(io.BytesIO(png_bytes((9, 9, 9))), filename="a.png")
    )
    stored: StoredMessage = fake.message(str(reply.id))
    assert stored.reply_to == question.id and stored.mention_ids == [fake.world.alice.id]
    assert reply.attachments[0].url.startswith(fake.base_url)
    await reply.edit(content="done", attachments=[])
    assert stored.content == "done" and stored.attachments == [] and stored.history[0].content == "sure"
    async with channel.typing():
        pass
    assert fake.calls_to("POST", r"/typing$")[0].status == 204
    await reply.delete()
    assert stored.deleted
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(reply.id)


async def test_attachment_and_member_options_are_resolved(fake: FakeDiscord, bot: MiniBot) -> None:
    upload = Upload("cat.png", png_bytes((5, 5, 5)))
    interaction = await fake.slash("inspect", {"image": upload, "who": fake.world.bob})
    answer = await interaction.wait_original()
    assert answer.content == f"cat.png {len(upload.data)} bytes for bob"
    with pytest.raises(ValueError, match="required option 'who'"):
        await fake.slash("inspect", {"image": upload})
    with pytest.raises(ValueError, match="unknown option"):
        await fake.slash("draw", {"prompt": "x", "colour": "red"})
    with pytest.raises(ValueError, match="out of range|> 4"):
        await fake.slash("draw", {"prompt": "x", "count": 9})


async def test_modal_round_trip(fake: FakeDiscord, bot: MiniBot) -> None:
    opened = await fake.slash("name")
    await opened.wait_callback()
    assert opened.modal is not None and opened.modal["title"] == "Your name"
    submitted = await fake.submit_modal(opened, {"name:text": "Zed"})
    answer = await submitted.wait_original()
    assert answer.content == "hi Zed" and answer.ephemeral


async def test_commands_are_offered_only_where_discord_offers_them(fake: FakeDiscord, bot: MiniBot) -> None:
    with pytest.raises(CommandUnavailable, match="lacks the permissions"):
        await fake.slash("purge", user=fake.world.alice)
    allowed = await fake.slash("purge", user=fake.world.moderator)
    assert (await allowed.wait_original()).content == "purged"
    with pytest.raises(CommandUnavailable, match="not synced"):
        await fake.slash("ping", channel=fake.dm_channel(fake.world.alice))
    with pytest.raises(CommandUnavailable, match="not synced"):
        await fake.slash("nope")


STAND_IN_BOT = textwrap.dedent(
    """
    # A stand-in for bot.py: reads the same environment, syncs one command, stops cleanly on SIGTERM.
    import asyncio, logging, os, signal

    import discord, discord.gateway, discord.http, yarl
    from discord import app_commands

    discord.http.Route.BASE = os.environ["DISCORD_API_BASE"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


    class StandIn(discord.Client):
        def __init__(self):
            super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            self.tree = app_commands.CommandTree(self)

            @self.tree.command(description="Say hi")
            async def hello(interaction: discord.Interaction) -> None:
                await interaction.response.send_message("hi from " + os.environ["ENGINE_PRESET"])

        async def setup_hook(self):
            await self.tree.sync()


    async def main():
        client = StandIn()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(client.close()))
        async with client:
            await client.start(os.environ["DISCORD_TOKEN"])
        logging.info("stopped cleanly")


    asyncio.run(main())
    """
)


async def test_bot_process_runs_a_bot_against_the_fake(fake: FakeDiscord, tmp_path: Path) -> None:
    script = tmp_path / "standin.py"
    script.write_text(STAND_IN_BOT)
    process = BotProcess(fake, tmp_path, cache_dir=tmp_path / "cache", script=script, env={"EXTRA": "1"})
    assert process.env["ENGINE_PRESET"] == "tiny" and process.env["DISCORD_API_BASE"] == fake.api_base
    async with process:
        await process.wait_ready(timeout=30)
        interaction = await fake.slash("hello")
        assert (await interaction.wait_original()).content == "hi from tiny"
        assert process.running
    assert process.returncode == 0
    assert "stopped cleanly" in process.log
    process.assert_clean_log()


async def test_autocomplete_choices_are_recorded(fake: FakeDiscord, bot: MiniBot) -> None:
    typing = await fake.autocomplete("style", {"name": "p"}, focused="name")
    assert await typing.wait_callback() == 8
    assert typing.callback_data is not None
    assert [choice["value"] for choice in typing.callback_data["choices"]] == ["photo", "painting", "pixel"]
    chosen = await fake.slash("style", {"name": "pixel"})
    assert (await chosen.wait_original()).content == "style pixel"


async def test_raw_gateway_protocol_and_message_content_intent(fake: FakeDiscord) -> None:
    guild_messages = 1 << 9
    async with aiohttp.ClientSession() as session, session.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive(timeout=5)
        assert hello.type is aiohttp.WSMsgType.TEXT and hello.json()["op"] == 10
        await ws.send_json({"op": 1, "d": None})
        assert (await ws.receive_json(timeout=5))["op"] == 11
        await ws.send_json({"op": 2, "d": {"token": "t", "intents": guild_messages, "properties": {}}})
        ready = await ws.receive_json(timeout=5)
        assert (ready["t"], ready["s"]) == ("READY", 1)
        assert ready["d"]["resume_gateway_url"] == fake.resume_gateway_url
        guild = await ws.receive_json(timeout=5)
        assert guild["t"] == "GUILD_CREATE" and guild["d"]["member_count"] == len(fake.world.guild.members)
        assert [member["user"]["id"] for member in guild["d"]["members"]] == [fake.bot_user.id]

        await fake.say(content="secret prompt")
        await fake.say(content=f"{fake.bot_user.mention} visible prompt")
        await fake.react(fake.messages()[0], "\N{THUMBS UP SIGN}")  # no reactions intent: not sent
        hidden, mentioned = await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)
        assert (hidden["t"], hidden["d"]["content"]) == ("MESSAGE_CREATE", "")
        assert mentioned["d"]["content"].endswith("visible prompt") and mentioned["s"] == 4
        assert [event for event, _ in fake.gateway.skipped_events] == ["MESSAGE_REACTION_ADD"]
