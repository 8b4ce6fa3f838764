"""A small discord.py bot with the shapes the real one uses, to prove the loopback Discord against."""

from __future__ import annotations

import asyncio
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image


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
