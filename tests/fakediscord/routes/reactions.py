"""REST routes: reactions (the bot's own, removing others', listing, clearing)."""

from __future__ import annotations

from ..api import ApiError, ApiRequest, Reply, RouteRow
from ..gateway import INTENT_GUILD_MESSAGE_REACTIONS
from ..messages import MessageStore
from ..payloads import emoji_json, emoji_key, is_custom_emoji
from ..permissions import MANAGE_MESSAGES


class ReactionRoutes(MessageStore):
    """``/channels/{channel_id}/messages/{message_id}/reactions``: unicode emojis only (no custom ones)."""

    def _reaction_routes(self) -> list[RouteRow]:
        return [
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._add_reaction, True),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
                self._remove_reaction,
                True,
            ),
            ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", self._get_reactions, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", self._clear_emoji, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions", self._clear_reactions, True),
        ]

    def _check_emoji(self, emoji: str) -> None:
        if is_custom_emoji(emoji):
            raise ApiError(400, 10014, "Unknown Emoji")  # the fake's guild has no custom emojis
        if emoji.isascii():  # ":thumbsup:", "thumbsup", "+1": not an emoji
            raise ApiError(400, 10014, "Unknown Emoji", kind="invalid_body")

    async def _add_reaction(self, request: ApiRequest, channel_id: str, message_id: str, emoji: str) -> Reply:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        self._check_emoji(emoji)
        self._require(channel, 0)
        await self._reaction_added(message, self.world.bot, emoji)
        return Reply(204)

    async def _remove_reaction(
        self, request: ApiRequest, channel_id: str, message_id: str, emoji: str, user_id: str
    ) -> Reply:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        if user_id == "@me":
            user = self.world.bot
        else:
            self._require(channel, MANAGE_MESSAGES)
            found = self.world.users.get(user_id)
            if found is None:
                raise ApiError(404, 10013, "Unknown User")
            user = found
        await self._reaction_removed(message, user, emoji)
        return Reply(204)

    async def _get_reactions(self, request: ApiRequest, channel_id: str, message_id: str, emoji: str) -> Reply:
        self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        users = message.reactions.get(emoji_key(emoji), [])
        return Reply(200, [self.world.users[user_id].to_json() for user_id in users])

    async def _clear_emoji(self, request: ApiRequest, channel_id: str, message_id: str, emoji: str) -> Reply:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        self._require(channel, MANAGE_MESSAGES)
        if message.reactions.pop(emoji_key(emoji), None):
            self.changed()
            data = {"channel_id": channel_id, "message_id": message_id, "emoji": emoji_json(emoji)}
            if message.guild_id:
                data["guild_id"] = message.guild_id
            await self.gateway.dispatch("MESSAGE_REACTION_REMOVE_EMOJI", data, intent=INTENT_GUILD_MESSAGE_REACTIONS)
        return Reply(204)

    async def _clear_reactions(self, request: ApiRequest, channel_id: str, message_id: str) -> Reply:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        self._require(channel, MANAGE_MESSAGES)
        if message.reactions:
            message.reactions.clear()
            self.changed()
            data = {"channel_id": channel_id, "message_id": message_id}
            if message.guild_id:
                data["guild_id"] = message.guild_id
            await self.gateway.dispatch("MESSAGE_REACTION_REMOVE_ALL", data, intent=INTENT_GUILD_MESSAGE_REACTIONS)
        return Reply(204)
