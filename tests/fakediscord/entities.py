"""The users, roles, channels, members and guilds the fake Discord knows, and their JSON payloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .permissions import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
)
from .snowflake import iso_timestamp

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
