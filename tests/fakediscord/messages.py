"""The message store: attachments, mentions, creating, editing and deleting messages, reactions; each
change is announced on the gateway the way Discord announces it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from .api import ApiError
from .entities import FakeChannel, FakeUser
from .gateway import (
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
)
from .payloads import PayloadBuilders, emoji_key
from .records import (
    FLAG_EPHEMERAL,
    FLAG_IS_COMPONENTS_V2,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    MSG_DEFAULT,
    Interaction,
    StoredAttachment,
    StoredMessage,
    Upload,
    UploadedFile,
)
from .snowflake import iso_timestamp
from .validation import validate_message

_MENTION_RE = re.compile(r"<@!?(\d+)>")


class MessageStore(PayloadBuilders):
    """Messages and their attachments and reactions, changed by the routes and by the driver."""

    def _store_attachment(
        self, channel_id: str, upload: UploadedFile | Upload, *, filename: str | None = None,
        description: str | None = None, ephemeral: bool = False
    ) -> StoredAttachment:
        if len(upload.data) > self.attachment_size_limit:
            raise ApiError(413, 40005, "Request entity too large")
        attachment_id = self.ids.next()
        name = filename or upload.filename
        attachment = StoredAttachment(
            id=attachment_id,
            filename=name,
            data=bytes(upload.data),
            url=f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{quote(name)}",
            content_type=upload.content_type if upload.content_type != "application/octet-stream" else None,
            description=description if description is not None else getattr(upload, "description", None),
            ephemeral=ephemeral,
        )
        self._attachments[attachment_id] = attachment
        return attachment

    def _new_attachments(
        self,
        payload: dict[str, Any],
        files: list[UploadedFile],
        current: StoredMessage | None,
        channel_id: str,
        ephemeral: bool,
    ) -> list[StoredAttachment]:
        for upload in files:
            if len(upload.data) > self.attachment_size_limit:
                raise ApiError(413, 40005, "Request entity too large")
        existing = {attachment.id: attachment for attachment in (current.attachments if current else [])}
        by_index = {upload.index: upload for upload in files}
        listed = payload.get("attachments")
        if listed is None:
            kept = list(existing.values())
            return kept + [self._store_attachment(channel_id, upload, ephemeral=ephemeral) for upload in files]
        result: list[StoredAttachment] = []
        used: set[int] = set()
        for position, entry in enumerate(listed):
            attachment_id = str(entry.get("id"))
            if attachment_id in existing:
                result.append(existing[attachment_id])
            elif attachment_id.isdigit() and int(attachment_id) in by_index:
                upload = by_index[int(attachment_id)]
                used.add(upload.index)
                result.append(
                    self._store_attachment(
                        channel_id,
                        upload,
                        filename=entry.get("filename") or upload.filename,
                        description=entry.get("description"),
                        ephemeral=ephemeral,
                    )
                )
            else:
                errors = {"attachments": {str(position): {"id": {"_errors": [
                    {"code": "ATTACHMENT_NOT_FOUND", "message": f"Unknown attachment id {attachment_id}"}]}}}}
                raise ApiError(400, 50035, "Invalid Form Body", errors=errors, kind="invalid_body")
        result.extend(
            self._store_attachment(channel_id, upload, ephemeral=ephemeral)
            for upload in files
            if upload.index not in used
        )
        return result

    def _mentions(self, content: str, allowed: dict[str, Any] | None) -> tuple[list[str], bool]:
        """Who gets pinged: users mentioned in ``content`` that ``allowed_mentions`` lets through, and @everyone."""
        parse = None if allowed is None else list(allowed.get("parse") or [])
        allowed_users = None if allowed is None else {str(user_id) for user_id in allowed.get("users") or []}
        ids: list[str] = []
        for user_id in _MENTION_RE.findall(content):
            if user_id not in self.world.users or user_id in ids:
                continue
            if parse is None or "users" in parse or (allowed_users and user_id in allowed_users):
                ids.append(user_id)
        everyone = ("@everyone" in content or "@here" in content) and (parse is None or "everyone" in parse)
        return ids, everyone

    def _check_message(self, content: str, embeds: list[Any], components: list[Any], attachments: int,
                       flags: int, *, extra_nonempty: bool = False) -> None:
        errors = validate_message(
            content=content, embeds=embeds, components=components, attachment_count=attachments, flags=flags
        )
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors=errors, kind="invalid_body")
        if not (content or embeds or components or attachments or extra_nonempty or flags & FLAG_LOADING):
            raise ApiError(400, 50006, "Cannot send an empty message", kind="invalid_body")

    async def _create_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        flags: int,
        message_type: int = MSG_DEFAULT,
        interaction: Interaction | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Validate, store and announce (MESSAGE_CREATE, unless ephemeral) a message."""
        content = str(payload.get("content") or "")
        embeds = list(payload.get("embeds") or [])
        components = list(payload.get("components") or [])
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        attachment_count = max(len(payload.get("attachments") or []), len(files))
        self._check_message(content, embeds, components, attachment_count, flags,
                            extra_nonempty=bool(payload.get("sticker_ids") or payload.get("poll")))
        attachments = self._new_attachments(payload, files, None, channel.id, ephemeral)
        allowed = payload.get("allowed_mentions")
        mention_ids, everyone = self._mentions(content, allowed)
        reference = payload.get("message_reference")
        if reference is not None:
            reference = {
                "type": 0,
                "channel_id": channel.id,
                **({"guild_id": channel.guild_id} if channel.guild_id else {}),
                **{key: str(value) if key.endswith("_id") and value is not None else value
                   for key, value in reference.items()},
            }
            referenced = self._messages.get(str(reference.get("message_id")))
            if referenced is not None and (allowed is None or allowed.get("replied_user", False)):
                if referenced.author.id not in mention_ids and referenced.author.id != author.id:
                    mention_ids.append(referenced.author.id)
        message = StoredMessage(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            created_at=self.now(),
            timestamp=iso_timestamp(),
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            flags=flags,
            type=message_type,
            tts=bool(payload.get("tts")),
            message_reference=reference,
            allowed_mentions=allowed,
            mention_ids=mention_ids,
            mention_everyone=everyone,
            nonce=None if payload.get("nonce") is None else str(payload["nonce"]),
            webhook_id=self.application_id if interaction is not None else None,
            application_id=self.application_id if interaction is not None else None,
            interaction_id=interaction.id if interaction is not None else None,
            interaction_metadata=metadata,
        )
        self._messages[message.id] = message
        self.changed()
        if not message.ephemeral:
            await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def _edit_message(self, message: StoredMessage, payload: dict[str, Any], files: list[UploadedFile]) -> None:
        """Apply an edit (fields present in ``payload`` replace, ``attachments`` lists what stays)."""
        content = message.content
        if "content" in payload:
            content = "" if payload["content"] is None else str(payload["content"])
        embeds = message.embeds if "embeds" not in payload else list(payload["embeds"] or [])
        components = message.components if "components" not in payload else list(payload["components"] or [])
        flags = message.flags & ~FLAG_LOADING
        if payload.get("flags") is not None:
            requested = int(payload["flags"])
            flags = (flags & ~FLAG_SUPPRESS_EMBEDS) | (requested & FLAG_SUPPRESS_EMBEDS)
            flags |= requested & FLAG_IS_COMPONENTS_V2
        listed = payload.get("attachments")
        count = len(listed) if listed is not None else len(message.attachments) + len(files)
        self._check_message(content, embeds, components, max(count, len(files)), flags)
        attachments = self._new_attachments(payload, files, message, message.channel_id, message.ephemeral)
        was_loading = message.loading
        message.history.append(message.snapshot(self.now()))
        message.content, message.embeds, message.components = content, embeds, components
        message.attachments, message.flags = attachments, flags
        if "allowed_mentions" in payload:
            message.allowed_mentions = payload["allowed_mentions"]
        message.mention_ids, message.mention_everyone = self._mentions(content, message.allowed_mentions)
        message.edited_at = self.now()
        if not was_loading:
            message.edited_timestamp = iso_timestamp()
        self.changed()
        if not message.ephemeral:
            await self._dispatch_message("MESSAGE_UPDATE", message)

    async def _delete_message(self, message: StoredMessage) -> None:
        message.deleted = True
        message.deleted_at = self.now()
        self.changed()
        if not message.ephemeral:
            data: dict[str, Any] = {"id": message.id, "channel_id": message.channel_id}
            if message.guild_id:
                data["guild_id"] = message.guild_id
            await self.gateway.dispatch("MESSAGE_DELETE", data, intent=self._message_intent(message))

    def _message_intent(self, message: StoredMessage) -> int:
        return INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES

    async def _dispatch_message(self, event: str, message: StoredMessage) -> None:
        data = self._message_json(message, gateway=True)
        bot = self.world.bot
        sees_content = (
            self.gateway.intents & INTENT_MESSAGE_CONTENT
            or message.author.id == bot.id
            or message.guild_id is None
            or bot.id in message.mention_ids
        )
        if not sees_content:  # what Discord strips without the privileged MESSAGE_CONTENT intent
            data.update(content="", embeds=[], attachments=[], components=[])
        await self.gateway.dispatch(event, data, intent=self._message_intent(message))

    async def _reaction_added(self, message: StoredMessage, user: FakeUser, emoji: str) -> None:
        users = message.reactions.setdefault(emoji_key(emoji), [])
        if user.id in users:
            return
        users.append(user.id)
        self.changed()
        intent = INTENT_GUILD_MESSAGE_REACTIONS if message.guild_id else INTENT_DIRECT_MESSAGE_REACTIONS
        await self.gateway.dispatch("MESSAGE_REACTION_ADD", self._reaction_event(message, user, emoji, add=True),
                                    intent=intent)

    async def _reaction_removed(self, message: StoredMessage, user: FakeUser, emoji: str) -> None:
        users = message.reactions.get(emoji_key(emoji), [])
        if user.id not in users:
            return
        users.remove(user.id)
        if not users:
            message.reactions.pop(emoji_key(emoji), None)
        self.changed()
        intent = INTENT_GUILD_MESSAGE_REACTIONS if message.guild_id else INTENT_DIRECT_MESSAGE_REACTIONS
        await self.gateway.dispatch("MESSAGE_REACTION_REMOVE",
                                    self._reaction_event(message, user, emoji, add=False), intent=intent)
