"""/settings: image channels, per-user limits, finals outside age-restricted channels, blocked words,
the image safety check, style presets (``core.styles``).

Members with Manage Server only: the commands are hidden from others by default permissions
(which a server can change), and every handler checks the permission again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.options import Prompt, StyleName, StylePick, StyleSuffix
from core.delivery import NO_MENTIONS
from core.history import GuildSettings
from core.limits import MAX_BLOCKED_WORDS, Refusal, parse_word_list
from core.render import shown
from core.safety import available as safety_available
from core.styles import Style, default_style

if TYPE_CHECKING:
    from bot import ImagineBot
    from core.jobs import JobService

log = logging.getLogger(__name__)

MAX_LIMIT = 100
SAFETY_WORDS = {
    "off": "off",
    "spoiler": "on: flagged images are posted as spoilers",
    "block": "on: flagged images are not posted",
}
SAFETY_CHOICES = [
    app_commands.Choice(name="off", value="off"),
    app_commands.Choice(name="spoiler: post flagged images blurred", value="spoiler"),
    app_commands.Choice(name="block: do not post flagged images", value="block"),
]
CHANNEL_PERMISSIONS = ("view_channel", "send_messages", "attach_files", "read_message_history", "add_reactions")


def describe_settings(settings: GuildSettings) -> str:
    channels = ", ".join(f"<#{c}>" for c in sorted(settings.image_channels)) or "none"
    words = ", ".join(shown(w, 50) for w in settings.blocked_words) or "none"
    return "\n".join(
        [
            "**Image settings for this server**",
            f"Image channels (every message is a prompt): {channels}",
            f"Jobs waiting per member: {settings.max_waiting_per_user}",
            f"Jobs per member per minute: {settings.max_jobs_per_minute}",
            "Finals outside age-restricted channels: " + ("allowed" if settings.finals_outside_nsfw else "not allowed"),
            f"Blocked words (outside age-restricted channels): {words}",
            f"Image safety check (outside age-restricted channels): {SAFETY_WORDS.get(settings.image_safety)}",
        ]
    )[:2000]


def server_id(interaction: discord.Interaction) -> int:
    """The server the command came from (the commands are server-only; a DM gets NoPrivateMessage)."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


class AdminCog(commands.Cog):
    """Server settings for the image bot."""

    settings = app_commands.Group(
        name="settings",
        description="Image bot settings for this server (Manage Server).",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )
    channels = app_commands.Group(
        name="channels", description="Channels where every message is a prompt.", parent=settings
    )
    words = app_commands.Group(
        name="words", description="Words refused in prompts outside age-restricted channels.", parent=settings
    )
    style = app_commands.Group(
        name="style", description="Named styles members pick with /imagine style: and /final style:.", parent=settings
    )

    def __init__(self, bot: ImagineBot) -> None:
        self.bot: ImagineBot = bot

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Checked on our side too: default permissions are only a default a server can change."""
        server_id(interaction)
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @property
    def jobs(self) -> JobService:  # guild settings go through its cache
        return self.bot.jobs

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text[:2000], ephemeral=True, allowed_mentions=NO_MENTIONS)

    @settings.command(name="show", description="Show this server's image settings.")
    async def show(self, interaction: discord.Interaction) -> None:
        guild_id = server_id(interaction)
        await self._reply(interaction, describe_settings(await self.jobs.guilds.get(guild_id)))

    # ----------------------------------------------------------------- image channels

    @channels.command(name="add", description="Make every message in a channel a prompt.")
    @app_commands.describe(channel="The channel")
    async def channel_add(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        guild_id = server_id(interaction)
        if channel.guild.id != guild_id:
            raise Refusal("That channel is in another server.")
        await self.jobs.guilds.add_image_channel(guild_id, channel.id)
        log.info("guild %s: image channel %s added by %s", guild_id, channel.id, interaction.user.id)
        text = f"{channel.mention} is now an image channel: every message there is a prompt."
        me = channel.guild.me
        if me is not None:
            permissions = channel.permissions_for(me)
            missing = [p.replace("_", " ").title() for p in CHANNEL_PERMISSIONS if not getattr(permissions, p)]
            if missing:
                text += f"\nI'm missing {', '.join(missing)} there; until a moderator fixes that, I can't answer."
        if not self.bot.intents.message_content:
            text += "\nI run without the Message Content intent (DISCORD_MESSAGE_CONTENT=false): I can't read prompts."
        await self._reply(interaction, text)

    @channels.command(name="remove", description="Stop treating a channel's messages as prompts.")
    @app_commands.describe(channel="The channel")
    async def channel_remove(self, interaction: discord.Interaction, channel: discord.TextChannel) -> None:
        guild_id = server_id(interaction)
        if not await self.jobs.guilds.remove_image_channel(guild_id, channel.id):
            raise Refusal(f"{channel.mention} is not an image channel.")
        log.info("guild %s: image channel %s removed by %s", guild_id, channel.id, interaction.user.id)
        await self._reply(interaction, f"{channel.mention} is a normal channel again.")

    @channels.command(name="list", description="List the image channels.")
    async def channel_list(self, interaction: discord.Interaction) -> None:
        guild_id = server_id(interaction)
        settings = await self.jobs.guilds.get(guild_id)
        channels = ", ".join(f"<#{c}>" for c in sorted(settings.image_channels))
        await self._reply(interaction, f"Image channels: {channels}" if channels else "There are no image channels.")

    # ----------------------------------------------------------------- limits and finals

    @settings.command(name="limits", description="Per-member limits: jobs waiting at once, jobs per minute.")
    @app_commands.describe(
        waiting=f"Jobs one member may have waiting (1-{MAX_LIMIT})", per_minute=f"Jobs per minute (1-{MAX_LIMIT})"
    )
    async def limits(
        self, interaction: discord.Interaction, waiting: int | None = None, per_minute: int | None = None
    ) -> None:
        guild_id = server_id(interaction)
        changes: dict[str, int] = {}
        for name, value, field in (
            ("waiting", waiting, "max_waiting_per_user"),
            ("per_minute", per_minute, "max_jobs_per_minute"),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not (1 <= value <= MAX_LIMIT):
                raise Refusal(f"{name} must be a whole number from 1 to {MAX_LIMIT}, not {value}.")
            changes[field] = value
        if not changes:
            settings = await self.jobs.guilds.get(guild_id)
        else:
            settings = await self.jobs.guilds.update(guild_id, **changes)
            log.info("guild %s: limits %s set by %s", guild_id, changes, interaction.user.id)
        await self._reply(
            interaction,
            f"Each member may have {settings.max_waiting_per_user} jobs waiting and start "
            f"{settings.max_jobs_per_minute} per minute.",
        )

    @settings.command(name="finals", description="Allow finals in channels that are not age-restricted.")
    @app_commands.describe(allowed="Allow finals outside age-restricted channels")
    async def finals(self, interaction: discord.Interaction, allowed: bool) -> None:
        guild_id = server_id(interaction)
        await self.jobs.guilds.update(guild_id, finals_outside_nsfw=bool(allowed))
        log.info("guild %s: finals outside nsfw = %s, by %s", guild_id, allowed, interaction.user.id)
        where = "in every channel" if allowed else "in age-restricted channels only"
        await self._reply(interaction, f"Finals are now made {where}.")

    @settings.command(name="safety", description="Check results for nudity outside age-restricted channels.")
    @app_commands.describe(mode="off, spoiler (post flagged images blurred) or block (do not post them)")
    @app_commands.choices(mode=SAFETY_CHOICES)
    async def safety(self, interaction: discord.Interaction, mode: str) -> None:
        guild_id = server_id(interaction)
        if mode not in SAFETY_WORDS:
            raise Refusal(f"Unknown mode {mode[:20]!r}: choose off, spoiler or block.")
        if mode != "off" and not safety_available():
            raise Refusal(
                "The image safety check is not installed on this bot: its owner can add it with "
                "pip install '.[safety]' (NudeNet)."
            )
        await self.jobs.guilds.update(guild_id, image_safety=mode)
        log.info("guild %s: image safety check = %s, by %s", guild_id, mode, interaction.user.id)
        await self._reply(
            interaction,
            f"Image safety check: {SAFETY_WORDS[mode]}. It looks at drafts and finals before they are posted in "
            "channels that are not age-restricted.",
        )

    # ----------------------------------------------------------------- blocked words

    @words.command(name="add", description="Refuse prompts with these words outside age-restricted channels.")
    @app_commands.describe(words="Words or phrases, separated by commas")
    async def words_add(self, interaction: discord.Interaction, words: str) -> None:
        guild_id = server_id(interaction)
        settings = await self.jobs.guilds.get(guild_id)
        new = [w for w in parse_word_list(words) if w not in settings.blocked_words]
        merged = (*settings.blocked_words, *new)
        if len(merged) > MAX_BLOCKED_WORDS:
            raise Refusal(f"That would make {len(merged)} blocked words; the most is {MAX_BLOCKED_WORDS}.")
        await self.jobs.guilds.update(guild_id, blocked_words=merged)
        log.info("guild %s: %d blocked words added by %s", guild_id, len(new), interaction.user.id)
        await self._reply(
            interaction, f"Blocked {len(new)} more word{'s' if len(new) != 1 else ''}; {len(merged)} in all."
        )

    @words.command(name="remove", description="Allow these words again.")
    @app_commands.describe(words="Words or phrases, separated by commas")
    async def words_remove(self, interaction: discord.Interaction, words: str) -> None:
        guild_id = server_id(interaction)
        settings = await self.jobs.guilds.get(guild_id)
        gone = set(parse_word_list(words))
        kept = tuple(w for w in settings.blocked_words if w not in gone)
        removed = len(settings.blocked_words) - len(kept)
        if not removed:
            raise Refusal("None of those words were blocked.")
        await self.jobs.guilds.update(guild_id, blocked_words=kept)
        log.info("guild %s: %d blocked words removed by %s", guild_id, removed, interaction.user.id)
        await self._reply(interaction, f"Unblocked {removed} word{'s' if removed != 1 else ''}; {len(kept)} left.")

    @words.command(name="list", description="List the blocked words.")
    async def words_list(self, interaction: discord.Interaction) -> None:
        guild_id = server_id(interaction)
        settings = await self.jobs.guilds.get(guild_id)
        if not settings.blocked_words:
            await self._reply(interaction, "No words are blocked.")
            return
        await self._reply(interaction, "Blocked words: " + ", ".join(shown(w, 50) for w in settings.blocked_words))

    # ----------------------------------------------------------------- style presets

    @style.command(name="add", description="Add a style (or replace one of that name, the bot's too).")
    @app_commands.describe(
        name="One word, like pixel-art",
        prompt_suffix="Words added to the prompt (leave out with a default's name to bring the bot's back)",
        negative="Words added to the negative prompt",
    )
    async def style_add(
        self,
        interaction: discord.Interaction,
        name: StyleName,
        prompt_suffix: StyleSuffix | None = None,
        negative: Prompt | None = None,
    ) -> None:
        guild_id = server_id(interaction)
        style, before = await self.jobs.styles.add(guild_id, name, prompt_suffix, negative)
        log.info("guild %s: style %r set by %s", guild_id, style.name, interaction.user.id)
        done = "replaced" if before is not None else "added"
        if style.default:
            done = "is the bot's own again"
        picked = f"members pick it with /imagine style:{style.name}"
        await self._reply(interaction, f"Style `{style.name}` {done}: {picked}.\n{describe_style(style)}")

    @style.command(name="remove", description="Stop offering a style here (the bot's defaults too).")
    @app_commands.describe(name="The style")
    async def style_remove(self, interaction: discord.Interaction, name: StylePick) -> None:
        guild_id = server_id(interaction)
        style = await self.jobs.styles.remove(guild_id, name)
        log.info("guild %s: style %r removed by %s", guild_id, style.name, interaction.user.id)
        text = f"Style `{style.name}` removed; jobs made with it keep their prompts."
        if default_style(style.name) is not None:
            text += f" /settings style add name:{style.name} brings the bot's version back."
        await self._reply(interaction, text)

    @style.command(name="list", description="List the styles members can pick here.")
    async def style_list(self, interaction: discord.Interaction) -> None:
        styles = await self.jobs.styles.available(server_id(interaction))
        if not styles:
            await self._reply(interaction, "No styles are offered here; add one with /settings style add.")
            return
        lines = [f"**Styles on this server** ({len(styles)})"]
        for style in styles:
            line = describe_style(style)
            if sum(len(item) + 1 for item in lines) + len(line) > 1950:
                lines.append(f"… and {len(styles) - len(lines) + 1} more.")
                break
            lines.append(line)
        await self._reply(interaction, "\n".join(lines))


def describe_style(style: Style) -> str:
    """One line for /settings style: the name, its texts, whose it is."""
    text = f"`{style.name}`{' (bot default)' if style.default else ''}: {shown(style.prompt_suffix, 200)}"
    if style.negative_prompt:
        text += f" · without: {shown(style.negative_prompt, 200)}"
    return text


async def setup(bot: ImagineBot) -> None:
    await bot.add_cog(AdminCog(bot))
