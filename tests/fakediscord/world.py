"""Everything the fake Discord knows, as plain data: the bot, its users, guilds and channels.

A :class:`World` is plain data: the fake's server builds Discord payloads from it, tests read it to
pick a user or a channel (``fake.world.alice``, ``fake.world.general``). The entities themselves
(users, roles, channels, members, guilds) are :mod:`tests.fakediscord.entities`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .entities import DM, GUILD_TEXT, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser, Overwrite
from .permissions import BOT_PERMISSIONS, EVERYONE_PERMISSIONS, MODERATOR_PERMISSIONS, SEND_MESSAGES
from .snowflake import SnowflakeFactory


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
