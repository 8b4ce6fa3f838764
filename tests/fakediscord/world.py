"""The users, guilds, roles and channels the fake Discord knows, and their JSON payloads.

A :class:`World` is plain data: the fake's server builds Discord payloads from it, tests read it to
pick a user or a channel (``fake.world.alice``, ``fake.world.general``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .snowflake import SnowflakeFactory, iso_timestamp

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
MODERATOR_PERMISSIONS = MANAGE_GUILD | MANAGE_MESSAGES
BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_EXTERNAL_EMOJIS
    | MANAGE_MESSAGES
    | SEND_MESSAGES_IN_THREADS
)

# Channel types.
GUILD_TEXT = 0
DM = 1


@dataclass(eq=False)
class FakeUser:
    """A Discord user. ``accepts_dms=False`` makes DMs to them fail with 50007, as for a user who blocks DMs."""

    id: str
    username: str
    bot: bool = False
    global_name: str | None = None
    accepts_dms: bool = True

    @property
    def mention(self) -> str:
        """``<@id>``, the way a message mentions this user."""
        return f"<@{self.id}>"

    def to_json(self) -> dict[str, Any]:
        """The user object."""
        data: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class FakeRole:
    """A guild role. The ``@everyone`` role has the guild's id."""

    id: str
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: str | None = None

    @property
    def mention(self) -> str:
        """``<@&id>``."""
        return f"<@&{self.id}>"

    def to_json(self) -> dict[str, Any]:
        """The role object."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": self.bot_id}
        return data


@dataclass(eq=False)
class Overwrite:
    """A channel permission overwrite: ``type`` 0 for a role id, 1 for a member id."""

    id: str
    type: int
    allow: int = 0
    deny: int = 0

    def to_json(self) -> dict[str, Any]:
        """The overwrite object."""
        return {"id": self.id, "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(eq=False)
class FakeChannel:
    """A guild text channel (type 0) or a DM channel (type 1)."""

    id: str
    type: int
    name: str | None = None
    guild_id: str | None = None
    nsfw: bool = False
    position: int = 0
    topic: str | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)

    @property
    def is_dm(self) -> bool:
        """Whether this is a DM channel."""
        return self.type == DM

    @property
    def mention(self) -> str:
        """``<#id>``."""
        return f"<#{self.id}>"

    def to_json(self) -> dict[str, Any]:
        """The channel object."""
        if self.type == DM:
            return {
                "id": self.id,
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [user.to_json() for user in self.recipients],
            }
        return {
            "id": self.id,
            "type": self.type,
            "guild_id": self.guild_id,
            "name": self.name,
            "position": self.position,
            "parent_id": None,
            "topic": self.topic,
            "nsfw": self.nsfw,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "permission_overwrites": [overwrite.to_json() for overwrite in self.overwrites],
        }


@dataclass(eq=False)
class FakeMember:
    """A user's membership of a guild: role ids exclude ``@everyone``."""

    user: FakeUser
    role_ids: list[str] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_timestamp)

    def to_json(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        """The guild member object; ``permissions`` is added the way interaction payloads carry it."""
        data: dict[str, Any] = {
            "roles": list(self.role_ids),
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.to_json()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class FakeGuild:
    """A guild with its roles, channels and members."""

    id: str
    name: str
    owner_id: str
    roles: list[FakeRole] = field(default_factory=list)
    channels: list[FakeChannel] = field(default_factory=list)
    members: dict[str, FakeMember] = field(default_factory=dict)
    preferred_locale: str = "en-US"

    @property
    def everyone(self) -> FakeRole:
        """The ``@everyone`` role (its id is the guild's id)."""
        return self.role(self.id)

    def role(self, role_id: str) -> FakeRole:
        """The role with this id; KeyError when there is none."""
        for role in self.roles:
            if role.id == role_id:
                return role
        raise KeyError(role_id)

    def role_named(self, name: str) -> FakeRole:
        """The role with this name; KeyError when there is none."""
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    def channel_named(self, name: str) -> FakeChannel:
        """The channel with this name; KeyError when there is none."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

    def member(self, user_id: str) -> FakeMember | None:
        """The member with this user id, or None."""
        return self.members.get(user_id)

    def permissions_for(self, user_id: str, channel: FakeChannel | None = None) -> int:
        """A member's permissions, in ``channel`` when given (Discord's overwrite algorithm)."""
        member = self.members.get(user_id)
        if member is None:
            return 0
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        permissions = self.everyone.permissions
        for role_id in member.role_ids:
            permissions |= self.role(role_id).permissions
        if permissions & ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel is None:
            return permissions
        by_id = {overwrite.id: overwrite for overwrite in channel.overwrites}
        everyone = by_id.get(self.id)
        if everyone is not None:
            permissions = (permissions & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.role_ids:
            overwrite = by_id.get(role_id)
            if overwrite is not None and overwrite.type == 0:
                allow |= overwrite.allow
                deny |= overwrite.deny
        permissions = (permissions & ~deny) | allow
        personal = by_id.get(user_id)
        if personal is not None and personal.type == 1:
            permissions = (permissions & ~personal.deny) | personal.allow
        return permissions

    def to_create_json(self, *, all_members: bool = True, bot_id: str | None = None) -> dict[str, Any]:
        """The GUILD_CREATE payload. With ``all_members`` every member is included (so discord.py needs no
        chunking); otherwise only the bot's own member, as Discord does without the GUILD_MEMBERS intent."""
        members = [member for member in self.members.values() if all_members or member.user.id == bot_id]
        return {
            "id": self.id,
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": self.preferred_locale,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": [role.to_json() for role in self.roles],
            "emojis": [],
            "stickers": [],
            "channels": [channel.to_json() for channel in self.channels],
            "threads": [],
            "members": [member.to_json() for member in members],
            "member_count": len(self.members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "joined_at": iso_timestamp(),
            "max_members": 500000,
            "nsfw": False,
            "premium_progress_bar_enabled": False,
        }

    def to_json(self) -> dict[str, Any]:
        """The guild object as ``GET /guilds/{id}`` answers it."""
        data = self.to_create_json()
        for key in ("channels", "threads", "members", "presences", "voice_states", "stage_instances"):
            data.pop(key)
        data.pop("joined_at")
        data.pop("large")
        data.pop("unavailable")
        data["approximate_member_count"] = len(self.members)
        return data


@dataclass(eq=False)
class World:
    """Everything the fake knows about: the bot, its users, guilds and channels (DMs included)."""

    bot: FakeUser
    ids: SnowflakeFactory = field(repr=False)
    users: dict[str, FakeUser] = field(default_factory=dict)
    guilds: dict[str, FakeGuild] = field(default_factory=dict)
    channels: dict[str, FakeChannel] = field(default_factory=dict)

    # The default world's shortcuts (set by :meth:`default`).
    guild: FakeGuild = field(init=False)
    general: FakeChannel = field(init=False)
    nsfw: FakeChannel = field(init=False)
    readonly: FakeChannel = field(init=False)
    owner: FakeUser = field(init=False)
    alice: FakeUser = field(init=False)
    bob: FakeUser = field(init=False)
    moderator: FakeUser = field(init=False)
    moderator_role: FakeRole = field(init=False)

    @classmethod
    def default(cls, ids: SnowflakeFactory) -> World:
        """One guild ("Loopback Guild") with:

        - channels ``general`` (text), ``nsfw-art`` (text, nsfw) and ``readonly`` (the bot may not send);
        - roles ``@everyone``, ``Moderator`` (MANAGE_GUILD | MANAGE_MESSAGES) and the bot's managed role;
        - members: the bot, ``owner`` (the guild owner), ``alice``, ``bob`` and ``mod`` (a Moderator).
        """
        bot = FakeUser(ids.next(), "Imagine", bot=True)
        world = cls(bot=bot, ids=ids)
        world.users[bot.id] = bot
        owner = world.add_user("owner")
        guild_id = ids.next()
        guild = FakeGuild(id=guild_id, name="Loopback Guild", owner_id=owner.id)
        moderator_role = FakeRole(ids.next(), "Moderator", MODERATOR_PERMISSIONS, position=2)
        bot_role = FakeRole(ids.next(), bot.username, BOT_PERMISSIONS, position=1, managed=True, bot_id=bot.id)
        guild.roles = [FakeRole(guild_id, "@everyone", EVERYONE_PERMISSIONS), bot_role, moderator_role]
        general = FakeChannel(ids.next(), GUILD_TEXT, "general", guild_id, position=0)
        nsfw = FakeChannel(ids.next(), GUILD_TEXT, "nsfw-art", guild_id, nsfw=True, position=1)
        readonly = FakeChannel(
            ids.next(),
            GUILD_TEXT,
            "readonly",
            guild_id,
            position=2,
            overwrites=[Overwrite(bot.id, 1, deny=SEND_MESSAGES)],
        )
        guild.channels = [general, nsfw, readonly]
        world.guilds[guild_id] = guild
        for channel in guild.channels:
            world.channels[channel.id] = channel
        guild.members[bot.id] = FakeMember(bot, [bot_role.id])
        guild.members[owner.id] = FakeMember(owner)
        world.guild, world.general, world.nsfw, world.readonly = guild, general, nsfw, readonly
        world.owner = owner
        world.moderator_role = moderator_role
        world.alice = world.add_user("alice", guild=guild)
        world.bob = world.add_user("bob", guild=guild)
        world.moderator = world.add_user("mod", guild=guild, role_ids=[moderator_role.id])
        return world

    def add_user(
        self,
        username: str,
        *,
        guild: FakeGuild | None = None,
        role_ids: list[str] | None = None,
        accepts_dms: bool = True,
        bot: bool = False,
    ) -> FakeUser:
        """A new user; a member of ``guild`` (with ``role_ids``) when one is given."""
        user = FakeUser(self.ids.next(), username, bot=bot, accepts_dms=accepts_dms)
        self.users[user.id] = user
        if guild is not None:
            guild.members[user.id] = FakeMember(user, list(role_ids or []))
        return user

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user``, created on first use."""
        for channel in self.channels.values():
            if channel.is_dm and any(recipient.id == user.id for recipient in channel.recipients):
                return channel
        channel = FakeChannel(self.ids.next(), DM, recipients=[user])
        self.channels[channel.id] = channel
        return channel

    def guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        """The guild a channel belongs to (None for DMs)."""
        return self.guilds.get(channel.guild_id) if channel.guild_id else None
