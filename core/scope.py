"""Who may act on another member's jobs: the moderator rule, in one place.

A member may list (``/history user:``), re-post (``/show``, the history menu) or cancel (``/cancel``,
❌) another member's jobs only when both hold:

- they have Manage Messages at the server level (from a role), not through one channel's overwrite;
- they can see and read, right now, every channel the job touched (where it was asked and where
  its result went). ``/history`` of another member lists only jobs of channels the caller can see.

Everyone acts on their own jobs as before.
"""

from __future__ import annotations

import logging
from typing import TypeGuard

import discord

from core.history import JobRecord

log = logging.getLogger(__name__)


def server_moderator(user: discord.abc.User | None) -> TypeGuard[discord.Member]:
    """Whether ``user`` is a member with Manage Messages for the whole server."""
    return isinstance(user, discord.Member) and user.guild_permissions.manage_messages


def can_read(member: discord.Member, channel_id: int | None) -> bool:
    """Whether ``member`` can see the channel (or thread) and read its history now; unknown channels: no."""
    guild = getattr(member, "guild", None)
    if channel_id is None or not isinstance(guild, discord.Guild):
        return False
    channel = guild.get_channel_or_thread(channel_id)
    if channel is None:
        return False
    permissions = channel.permissions_for(member)
    return permissions.view_channel and permissions.read_message_history


def moderates(user: discord.abc.User | None, job: JobRecord) -> bool:
    """Whether ``user`` may act on ``job`` as a moderator (see the module's rule)."""
    if not server_moderator(user):
        return False
    if job.guild_id != user.guild.id:
        return False
    channels = {job.channel_id, job.result_channel_id} - {None}
    return all(can_read(user, channel_id) for channel_id in channels)


def readable_channel_ids(member: discord.Member) -> list[int]:
    """The server's channels and threads ``member`` can see and read now."""
    guild = member.guild
    places = [*guild.channels, *guild.threads]
    return [
        place.id
        for place in places
        if not isinstance(place, discord.CategoryChannel) and can_read(member, place.id)
    ]
