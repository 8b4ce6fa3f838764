"""The loopback Discord against a small discord.py bot running in the test's own event loop.

These tests prove the fake is good enough for the real bot: start-up and command sync, slash commands
with a deferred answer and a PNG follow-up, buttons, reactions, a dropped gateway resumed, a 429 retried,
an expired token surfacing as ``discord.NotFound``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakediscord import BotProcess, CommandUnavailable, FakeDiscord, RateLimit, StoredMessage, Upload
from tests.fakediscord.openapi import OpenApiCheck
from tests.fakediscord.records import CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE
from tests.fakediscord.world import MANAGE_GUILD, MANAGE_MESSAGES


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    """A small solid PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class AgainView(discord.ui.View):
    """One button; clicking it edits the message in place (callback type 7)."""

    def __init__(self) -> None:
        super().__init__(timeout=60)

    @discord.ui.button(label="Again", custom_id="draw:again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[AgainView]) -> None:
        await interaction.response.edit_message(content="again!", view=None)


class MiniBot(commands.Bot):
    """A tiny bot with the shapes the real one uses: defer + follow-up with files, buttons, reactions."""

    def __init__(self, guild_id: int) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.raw_reactions: list[discord.RawReactionActionEvent] = []
        self.seen_messages: list[discord.Message] = []
        self.caught: list[discord.HTTPException] = []
        self.release = asyncio.Event()
        self.resumed_count = 0

    async def setup_hook(self) -> None:
        self.tree.add_command(draw)
        self.tree.add_command(react)
        self.tree.add_command(slow)
        self.tree.add_command(sleepy)
        for command in (inspect, name, purge, style):
            self.tree.add_command(command)
        self.tree.add_command(ping, guild=discord.Object(self.guild_id))
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.raw_reactions.append(payload)

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            self.seen_messages.append(message)

    async def on_resumed(self) -> None:
        self.resumed_count += 1


@app_commands.command(description="Draw some squares")
@app_commands.describe(prompt="What to draw", count="How many")
async def draw(
    interaction: discord.Interaction[MiniBot], prompt: str, count: app_commands.Range[int, 1, 4] = 1
) -> None:
    await interaction.response.defer(thinking=True)
    files = [discord.File(io.BytesIO(png_bytes((60 * i, 100, 200))), filename=f"draw_{i}.png") for i in range(count)]
    await interaction.followup.send(content=f"**{prompt}**", files=files, view=AgainView())


@app_commands.command(description="Answer, then react to the answer")
async def react(interaction: discord.Interaction[MiniBot]) -> None:
    await interaction.response.send_message("reacting")
    message = await interaction.original_response()
    await message.add_reaction("\N{THUMBS UP SIGN}")


@app_commands.command(description="Defer, wait for the test, then follow up")
async def slow(interaction: discord.Interaction[MiniBot]) -> None:
    await interaction.response.defer(ephemeral=True)
    await interaction.client.release.wait()
    try:
        await interaction.followup.send("late")
    except discord.NotFound as exc:
        interaction.client.caught.append(exc)


@app_commands.command(description="Take too long to acknowledge")
async def sleepy(interaction: discord.Interaction[MiniBot]) -> None:
    await asyncio.sleep(0.3)
    try:
        await interaction.response.defer()
    except discord.NotFound as exc:
        interaction.client.caught.append(exc)


@app_commands.command(description="Look at an image someone posted")
async def inspect(interaction: discord.Interaction[MiniBot], image: discord.Attachment, who: discord.Member) -> None:
    data = await image.read()
    await interaction.response.send_message(f"{image.filename} {len(data)} bytes for {who.name}")


class NameModal(discord.ui.Modal, title="Your name"):
    name: discord.ui.TextInput[NameModal] = discord.ui.TextInput(label="Name", custom_id="name:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"hi {self.name.value}", ephemeral=True)


@app_commands.command(description="Ask for a name in a modal")
async def name(interaction: discord.Interaction[MiniBot]) -> None:
    await interaction.response.send_modal(NameModal())


@app_commands.command(description="Pick a style")
async def style(interaction: discord.Interaction[MiniBot], name: str) -> None:
    await interaction.response.send_message(f"style {name}")


@style.autocomplete("name")
async def style_names(interaction: discord.Interaction[MiniBot], current: str) -> list[app_commands.Choice[str]]:
    names = ["photo", "painting", "pixel"]
    return [app_commands.Choice(name=name, value=name) for name in names if name.startswith(current)]


@app_commands.command(description="Moderators only")
@app_commands.default_permissions(manage_messages=True)
async def purge(interaction: discord.Interaction[MiniBot]) -> None:
    await interaction.response.send_message("purged", ephemeral=True)


@app_commands.command(description="Guild-only ping")
async def ping(interaction: discord.Interaction[MiniBot]) -> None:
    await interaction.response.send_message("pong", ephemeral=True)


class ErrorRecords(logging.Handler):
    """Collects ERROR records from discord.py: errors in commands and listeners are only logged."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake
        fake.assert_no_errors()


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[MiniBot]:
    errors = ErrorRecords()
    discord_log = logging.getLogger("discord")
    discord_log.addHandler(errors)
    with fake.patched_discord_py():
        mini = MiniBot(int(fake.world.guild.id))
        runner = asyncio.create_task(mini.start("fake-token"))
        try:
            await asyncio.wait_for(mini.wait_until_ready(), 10)
            yield mini
        finally:
            await mini.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(runner, 5)
            discord_log.removeHandler(errors)
    assert not errors.records, [record.getMessage() for record in errors.records]


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


# --------------------------------------------------------------------------- rate limits, DMs, the API description


async def _post(session: aiohttp.ClientSession, fake: FakeDiscord, path: str, body: dict) -> aiohttp.ClientResponse:
    response = await session.post(f"{fake.api_base}{path}", json=body, headers={"Authorization": "Bot fake-token"})
    await response.read()
    return response


async def test_channel_rate_limit_answers_429s_the_way_discord_does(fake: FakeDiscord) -> None:
    fake.channel_rate_limit = RateLimit(count=3, per=1.0)
    general, nsfw = fake.world.general.id, fake.world.nsfw.id
    async with aiohttp.ClientSession() as session:
        replies = [await _post(session, fake, f"/channels/{general}/messages", {"content": f"m{i}"}) for i in range(4)]
        assert [r.status for r in replies] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["2", "1", "0", "0"]
        limited = replies[-1]
        assert limited.headers["Via"] and limited.headers["X-RateLimit-Limit"] == "3"
        assert limited.headers["X-RateLimit-Bucket"] == replies[0].headers["X-RateLimit-Bucket"]
        assert 0 < float(limited.headers["X-RateLimit-Reset-After"]) <= 1.0
        assert int(limited.headers["Retry-After"]) >= 1
        body = await limited.json()
        assert body["global"] is False and 0 < body["retry_after"] <= 1.0
        assert (await _post(session, fake, f"/channels/{nsfw}/messages", {"content": "x"})).status == 200
        await asyncio.sleep(float(limited.headers["X-RateLimit-Reset-After"]) + 0.05)
        assert (await _post(session, fake, f"/channels/{general}/messages", {"content": "later"})).status == 200
    assert len(fake.rate_limited) == 1 and fake.rate_limited[0].rate_limited
    assert [m.content for m in fake.messages(fake.world.general)] == ["m0", "m1", "m2", "later"]


async def test_discord_py_rides_out_the_channel_limit_on_sends_and_edits(fake: FakeDiscord, bot: MiniBot) -> None:
    fake.channel_rate_limit = RateLimit(count=5, per=1.0)
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    started = time.monotonic()
    sent = await asyncio.gather(*(channel.send(f"n{i}") for i in range(8)))
    edited = await asyncio.gather(*(message.edit(content=f"{message.content}!") for message in sent))
    assert time.monotonic() - started >= 1.0  # the sixth create waited for the window to pass
    assert sorted(m.content for m in edited) == sorted(f"n{i}!" for i in range(8))
    assert sorted(m.content for m in fake.messages(fake.world.general)) == sorted(f"n{i}!" for i in range(8))


async def test_results_by_dm_work_end_to_end(fake: FakeDiscord, bot: MiniBot) -> None:
    alice = fake.world.alice
    shy = fake.world.add_user("shy", guild=fake.world.guild, accepts_dms=False)
    user = await bot.fetch_user(int(alice.id))  # GET /users/{id}: not in the cache as a DM recipient
    await user.send("your image", file=discord.File(io.BytesIO(png_bytes((1, 2, 3))), filename="final.png"))
    [dm] = fake.messages(fake.world.dm_channel(alice))
    assert dm.content == "your image" and [a.filename for a in dm.attachments] == ["final.png"]
    assert fake.calls_to("GET", rf"^/users/{alice.id}$") and fake.calls_to("POST", r"^/users/@me/channels$")
    with pytest.raises(discord.Forbidden) as closed:
        await (await bot.fetch_user(int(shy.id))).send("nope")
    assert closed.value.code == 50007


async def test_upload_only_faults_spare_text_only_calls(fake: FakeDiscord, bot: MiniBot) -> None:
    fault = fake.fail_next_upload("POST", r"/channels/\d+/messages$", status=429, retry_after=0.2)
    channel = bot.get_channel(int(fake.world.general.id))
    assert isinstance(channel, discord.TextChannel)
    await channel.send("text only")
    assert fault.remaining == 1
    await channel.send("with a file", file=discord.File(io.BytesIO(png_bytes((4, 5, 6))), filename="a.png"))
    assert fault.remaining == 0 and [call.files != [] for call in fault.hits] == [True]
    assert [call.status for call in fake.calls_to("POST", r"/messages$")] == [200, 429, 200]


@pytest.mark.skipif(OpenApiCheck.load() is None, reason="no ../shared/discord-openapi.json")
async def test_requests_are_checked_against_discords_api_description(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        await _post(session, fake, f"/channels/{fake.world.general.id}/messages", {"content": 5})
    [error] = fake.take_errors("openapi")
    assert "content" in error.message and "not of type 'string'" in error.message


def test_the_api_description_is_not_copied_into_the_repository() -> None:
    root = Path(__file__).resolve().parent.parent
    assert not [p for p in root.rglob("discord-openapi*.json") if ".venv" not in p.parts]


async def test_an_enforced_nonce_answers_the_message_it_already_made(fake: FakeDiscord) -> None:
    general = fake.world.general.id
    async with aiohttp.ClientSession() as session:
        first = await _post(session, fake, f"/channels/{general}/messages",
                            {"content": "result", "nonce": "job42", "enforce_nonce": True})
        again = await _post(session, fake, f"/channels/{general}/messages",
                            {"content": "result", "nonce": "job42", "enforce_nonce": True})
        loose = await _post(session, fake, f"/channels/{general}/messages", {"content": "result", "nonce": "job42"})
        assert (await first.json())["id"] == (await again.json())["id"] != (await loose.json())["id"]
    assert [m.content for m in fake.messages(fake.world.general)] == ["result", "result"]
