"""REST routes: channels and their messages (history, post, edit, delete, typing)."""

from __future__ import annotations

from ..api import ApiError, ApiRequest, Reply, RouteRow
from ..messages import MessageStore
from ..permissions import ATTACH_FILES, MANAGE_MESSAGES, SEND_MESSAGES
from ..records import FLAGS_ON_CREATE, MSG_DEFAULT, MSG_REPLY

NONCE_WINDOW_S = 5 * 60.0  # how long Discord remembers an enforced nonce (a few minutes)


class ChannelRoutes(MessageStore):
    """``/channels/{channel_id}`` and its ``/messages``, with the bot's permissions checked as Discord does."""

    def _channel_routes(self) -> list[RouteRow]:
        return [
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/channels/{channel_id}/messages", self._get_history, True),
            ("POST", "/channels/{channel_id}/messages", self._post_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
        ]

    async def _get_channel(self, request: ApiRequest, channel_id: str) -> Reply:
        channel = self._channel(channel_id)
        self._require(channel, 0)
        return Reply(200, channel.to_json())

    async def _get_history(self, request: ApiRequest, channel_id: str) -> Reply:
        channel = self._channel(channel_id)
        self._require(channel, 0)
        limit = max(1, min(100, int(request.query.get("limit", "50"))))
        found = sorted(self.messages(channel, include_ephemeral=False), key=lambda message: int(message.id))
        if "after" in request.query:
            found = [message for message in found if int(message.id) > int(request.query["after"])][:limit]
        if "before" in request.query:
            found = [message for message in found if int(message.id) < int(request.query["before"])]
        found = list(reversed(found))[:limit]
        return Reply(200, [self._message_json(message) for message in found])

    async def _post_message(self, request: ApiRequest, channel_id: str) -> Reply:
        channel = self._channel(channel_id)
        if channel.is_dm:
            if not all(recipient.accepts_dms for recipient in channel.recipients):
                raise ApiError(403, 50007, "Cannot send messages to this user")
        else:
            self._require(channel, SEND_MESSAGES)
            if request.files:
                self._require(channel, ATTACH_FILES)
        payload = request.json if isinstance(request.json, dict) else {}
        reference = payload.get("message_reference")
        if reference is not None:
            referenced = self._messages.get(str(reference.get("message_id")))
            missing = referenced is None or referenced.deleted or referenced.channel_id != channel.id
            if missing and reference.get("fail_if_not_exists", True):
                raise ApiError(400, 50035, "Invalid Form Body", errors={"message_reference": {"_errors": [
                    {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]}})
        if payload.get("enforce_nonce") and payload.get("nonce") is not None:
            # Discord: the same nonce from the same author in the same channel within a few minutes
            # answers the message that nonce already made instead of creating a second one.
            nonce = str(payload["nonce"])
            for earlier in reversed(self._messages.values()):
                if (earlier.channel_id == channel.id and earlier.nonce == nonce and not earlier.deleted
                        and earlier.author.id == self.world.bot.id
                        and self.now() - earlier.created_at < NONCE_WINDOW_S):
                    return Reply(200, self._message_json(earlier))
        flags = int(payload.get("flags") or 0)
        flags &= FLAGS_ON_CREATE
        message = await self._create_message(
            channel,
            self.world.bot,
            payload,
            request.files,
            flags=flags,
            message_type=MSG_REPLY if reference is not None else MSG_DEFAULT,
        )
        return Reply(200, self._message_json(message))

    async def _get_message(self, request: ApiRequest, channel_id: str, message_id: str) -> Reply:
        channel = self._channel(channel_id)
        self._require(channel, 0)
        return Reply(200, self._message_json(self._channel_message(channel_id, message_id)))

    async def _edit_channel_message(self, request: ApiRequest, channel_id: str, message_id: str) -> Reply:
        self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        if message.author.id != self.world.bot.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        payload = request.json if isinstance(request.json, dict) else {}
        await self._edit_message(message, payload, request.files)
        return Reply(200, self._message_json(message))

    async def _delete_channel_message(self, request: ApiRequest, channel_id: str, message_id: str) -> Reply:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        if message.author.id != self.world.bot.id and not channel.is_dm:
            self._require(channel, MANAGE_MESSAGES)
        await self._delete_message(message)
        return Reply(204)

    async def _typing(self, request: ApiRequest, channel_id: str) -> Reply:
        self._require(self._channel(channel_id), SEND_MESSAGES)
        return Reply(204)
