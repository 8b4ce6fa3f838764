"""Payload builders: users, members, messages, interactions and reactions as Discord's JSON has them."""

from __future__ import annotations

import re
from typing import Any

from .entities import FakeChannel, FakeGuild, FakeUser
from .records import APPLICATION_COMMAND, MSG_CHAT_INPUT_COMMAND, Interaction, StoredMessage
from .state import FakeState

_CUSTOM_EMOJI_RE = re.compile(r"^(?:a:)?([\w~]{1,32}):(\d+)$")


def is_custom_emoji(emoji: str) -> bool:
    """Whether ``emoji`` is a custom one (``name:id`` or ``a:name:id``) rather than a unicode emoji."""
    return _CUSTOM_EMOJI_RE.match(emoji) is not None


def emoji_json(emoji: str) -> dict[str, Any]:
    """An emoji as reactions and reaction events carry it (``{"id": None, "name": "👍"}`` for unicode)."""
    match = _CUSTOM_EMOJI_RE.match(emoji)
    if match:
        return {"id": match.group(2), "name": match.group(1), "animated": emoji.startswith("a:")}
    return {"id": None, "name": emoji}


def emoji_key(emoji: str) -> str:
    """The key a message's reactions are stored under (``name:id`` without the ``a:`` of animated ones)."""
    match = _CUSTOM_EMOJI_RE.match(emoji)
    return f"{match.group(1)}:{match.group(2)}" if match else emoji


class PayloadBuilders(FakeState):
    """The JSON the REST answers and the gateway events carry."""

    def bot_user_json(self) -> dict[str, Any]:
        """The bot user as ``GET /users/@me`` and READY send it."""
        data = self.world.bot.to_json()
        data.update({"bot": True, "verified": True, "mfa_enabled": False, "flags": 0, "locale": "en-US"})
        return data

    def _application_json(self) -> dict[str, Any]:
        owner = self.world.users.get(self.world.guild.owner_id) if hasattr(self.world, "guild") else None
        return {
            "id": self.application_id,
            "name": self.world.bot.username,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": (owner or self.world.bot).to_json(),
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
            "summary": "",
            "bot": self.bot_user_json(),
            "approximate_guild_count": len(self.world.guilds),
        }

    def _member_json(self, guild: FakeGuild, user: FakeUser, *, with_user: bool, channel: FakeChannel | None = None,
                     with_permissions: bool = False) -> dict[str, Any] | None:
        member = guild.member(user.id)
        if member is None:
            return None
        permissions = guild.permissions_for(user.id, channel) if with_permissions else None
        return member.to_json(with_user=with_user, permissions=permissions)

    def _message_json(self, message: StoredMessage, *, gateway: bool = False, nested: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": message.id,
            "channel_id": message.channel_id,
            "type": message.type,
            "content": message.content,
            "author": message.author.to_json(),
            "attachments": [attachment.to_json() for attachment in message.attachments],
            "embeds": list(message.embeds),
            "components": list(message.components),
            "mentions": [self.world.users[user_id].to_json() for user_id in message.mention_ids],
            "mention_roles": [],
            "mention_everyone": message.mention_everyone,
            "pinned": False,
            "tts": message.tts,
            "timestamp": message.timestamp,
            "edited_timestamp": message.edited_timestamp,
            "flags": message.flags,
        }
        if message.guild_id is not None:
            data["guild_id"] = message.guild_id
            guild = self.world.guilds[message.guild_id]
            if gateway and message.webhook_id is None:
                member = self._member_json(guild, message.author, with_user=False)
                if member is not None:
                    data["member"] = member
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.webhook_id is not None:
            data["webhook_id"] = message.webhook_id
        if message.application_id is not None:
            data["application_id"] = message.application_id
        if message.interaction_metadata is not None:
            data["interaction_metadata"] = message.interaction_metadata
            if message.type == MSG_CHAT_INPUT_COMMAND:
                metadata = message.interaction_metadata
                data["interaction"] = {
                    "id": metadata["id"],
                    "type": metadata["type"],
                    "name": metadata.get("name", ""),
                    "user": metadata["user"],
                }
        if message.reactions:
            data["reactions"] = [
                {
                    "emoji": emoji_json(emoji),
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": self.world.bot.id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in message.reactions.items()
                if users
            ]
        if message.message_reference is not None:
            data["message_reference"] = message.message_reference
            if not nested:
                referenced = self._messages.get(str(message.message_reference.get("message_id")))
                data["referenced_message"] = (
                    self._message_json(referenced, nested=True)
                    if referenced is not None and not referenced.deleted
                    else None
                )
        return data

    def _interaction_metadata(self, interaction: Interaction, *, followup_of: str | None = None) -> dict[str, Any]:
        owners = {"0": interaction.guild.id} if interaction.guild else {"1": interaction.user.id}
        metadata: dict[str, Any] = {
            "id": interaction.id,
            "type": interaction.type,
            "user": interaction.user.to_json(),
            "authorizing_integration_owners": owners,
        }
        if interaction.type == APPLICATION_COMMAND:
            metadata["name"] = interaction.name
            metadata["command_type"] = 1
        if interaction.source_message_id is not None:
            metadata["interacted_message_id"] = interaction.source_message_id
        if followup_of is not None:
            metadata["original_response_message_id"] = followup_of
        return metadata

    def _interaction_payload(self, interaction: Interaction, message: StoredMessage | None) -> dict[str, Any]:
        channel, guild, user = interaction.channel, interaction.guild, interaction.user
        payload: dict[str, Any] = {
            "id": interaction.id,
            "application_id": self.application_id,
            "type": interaction.type,
            "token": interaction.token,
            "version": 1,
            "data": interaction.data,
            "channel_id": channel.id,
            "channel": channel.to_json(),
            "locale": "en-US",
            "app_permissions": str(self._bot_permissions(channel)),
            "attachment_size_limit": self.attachment_size_limit,
            "entitlements": [],
            "entitlement_sku_ids": [],
        }
        if guild is not None:
            payload.update(
                guild_id=guild.id,
                guild={"id": guild.id, "locale": guild.preferred_locale, "features": []},
                guild_locale=guild.preferred_locale,
                member=self._member_json(guild, user, with_user=True, channel=channel, with_permissions=True),
                context=0,
                authorizing_integration_owners={"0": guild.id},
            )
        else:
            payload.update(user=user.to_json(), context=1, authorizing_integration_owners={"0": "0"})
        if message is not None:
            payload["message"] = self._message_json(message)
        return payload

    def _reaction_event(self, message: StoredMessage, user: FakeUser, emoji: str, *, add: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": user.id,
            "channel_id": message.channel_id,
            "message_id": message.id,
            "emoji": emoji_json(emoji),
            "type": 0,
            "burst": False,
        }
        if message.guild_id:
            data["guild_id"] = message.guild_id
            if add:
                member = self._member_json(self.world.guilds[message.guild_id], user, with_user=True)
                if member is not None:
                    data["member"] = member
        if add:
            data["message_author_id"] = message.author.id
            data["burst_colors"] = []
        return data
