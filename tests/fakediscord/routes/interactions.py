"""REST routes: interaction callbacks and the interaction webhooks (follow-ups, the original response)."""

from __future__ import annotations

from typing import Any

from ..api import ApiError, ApiRequest, Reply, RouteRow
from ..messages import MessageStore
from ..records import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAGS_ON_CREATE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    MSG_CHAT_INPUT_COMMAND,
    MSG_DEFAULT,
    UPDATE_MESSAGE,
    Interaction,
    StoredMessage,
)


class InteractionRoutes(MessageStore):
    """``/interactions/{id}/{token}/callback`` and ``/webhooks/{app_id}/{token}``: acknowledging an
    interaction within the deadline, then following up while its token lives."""

    def _interaction_routes(self) -> list[RouteRow]:
        return [
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback, False),
            ("POST", "/webhooks/{app_id}/{token}", self._webhook_execute, False),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_get_message, False),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_edit_message, False),
            ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_delete_message, False),
        ]

    def _token_expired(self, interaction: Interaction) -> bool:
        return interaction.expired or self.now() - interaction.created_at > self.token_lifetime

    async def _interaction_callback(self, request: ApiRequest, interaction_id: str, token: str) -> Reply:
        interaction = self._by_token.get(token)
        if interaction is None or interaction.id != interaction_id:
            raise ApiError(404, 10062, "Unknown interaction", kind="unknown_interaction")
        if self._token_expired(interaction):
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.callback_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.", kind="already_acknowledged")
        late = self.now() - interaction.created_at
        if self.callback_deadline is not None and late > self.callback_deadline:
            raise ApiError(404, 10062, f"Unknown interaction (callback after {late:.2f}s)", kind="interaction_timeout")
        body = request.json if isinstance(request.json, dict) else {}
        callback_type = body.get("type")
        data = body.get("data") or {}
        allowed = {
            APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
            MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE,
                                MODAL},
            MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE},
            AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
        }
        if callback_type not in allowed.get(interaction.type, set()):
            raise ApiError(400, 50035, f"Invalid Form Body (callback type {callback_type!r} for interaction type "
                           f"{interaction.type})", kind="invalid_body")
        message: StoredMessage | None = None
        if callback_type in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            flags = int(data.get("flags") or 0)
            if callback_type == DEFERRED_CHANNEL_MESSAGE:
                flags = (flags & FLAG_EPHEMERAL) | FLAG_LOADING
                payload: dict[str, Any] = {}
            else:
                flags &= FLAG_EPHEMERAL | FLAGS_ON_CREATE
                payload = data
            message = await self._create_message(
                interaction.channel,
                self.world.bot,
                payload,
                request.files,
                flags=flags,
                message_type=MSG_CHAT_INPUT_COMMAND if interaction.type == APPLICATION_COMMAND else MSG_DEFAULT,
                interaction=interaction,
                metadata=self._interaction_metadata(interaction),
            )
            interaction.original_message_id = message.id
        elif callback_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            if interaction.source_message_id is None:
                raise ApiError(400, 50035, "Invalid Form Body (no message to update)", kind="invalid_body")
            message = self.message(interaction.source_message_id)
            if callback_type == UPDATE_MESSAGE:
                await self._edit_message(message, data, request.files)
            interaction.original_message_id = message.id
        interaction.callback_at = self.now()
        interaction.callback_type = callback_type
        interaction.callback_data = data
        self.changed()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return Reply(204)
        summary: dict[str, Any] = {"id": interaction.id, "type": interaction.type}
        resource: dict[str, Any] = {"type": callback_type}
        if message is not None:
            summary.update(
                response_message_id=message.id,
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
            if callback_type != DEFERRED_UPDATE_MESSAGE:
                resource["message"] = self._message_json(message)
        return Reply(200, {"interaction": summary, "resource": resource})

    def _webhook_interaction(self, app_id: str, token: str) -> Interaction:
        interaction = self._by_token.get(token)
        if app_id != self.application_id or interaction is None:
            raise ApiError(404, 10015, "Unknown Webhook", kind="unknown_interaction")
        if self._token_expired(interaction):
            raise ApiError(404, 10015, "Unknown Webhook")
        if interaction.callback_type is None:
            raise ApiError(404, 10015, "Unknown Webhook (the interaction was never acknowledged)",
                           kind="unacknowledged_interaction")
        return interaction

    def _webhook_message(self, interaction: Interaction, message_id: str) -> StoredMessage:
        if message_id == "@original":
            if interaction.original_message_id is None:
                raise ApiError(404, 10008, "Unknown Message")
            message_id = interaction.original_message_id
        if message_id != interaction.original_message_id and message_id not in interaction.followup_ids:
            raise ApiError(404, 10008, "Unknown Message")
        message = self.message(message_id)
        if message.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _webhook_execute(self, request: ApiRequest, app_id: str, token: str) -> Reply:
        interaction = self._webhook_interaction(app_id, token)
        payload = request.json if isinstance(request.json, dict) else {}
        wait = request.query.get("wait", "").lower() in ("1", "true")
        original = interaction.original
        if (
            interaction.callback_type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            # Discord: the first follow-up after a type-5 defer edits the "thinking" message; its ephemeral
            # state stays what the defer said, whatever the follow-up's flags say.
            await self._edit_message(original, {k: v for k, v in payload.items() if k != "flags"}, request.files)
            interaction.first_followup_edited_original = True
            message = original
        else:
            flags = int(payload.get("flags") or 0)
            flags &= FLAG_EPHEMERAL | FLAGS_ON_CREATE
            message = await self._create_message(
                interaction.channel,
                self.world.bot,
                payload,
                request.files,
                flags=flags,
                interaction=interaction,
                metadata=self._interaction_metadata(interaction, followup_of=interaction.original_message_id),
            )
            interaction.followup_ids.append(message.id)
            self.changed()
        return Reply(200, self._message_json(message)) if wait else Reply(204)

    async def _webhook_get_message(self, request: ApiRequest, app_id: str, token: str, message_id: str) -> Reply:
        interaction = self._webhook_interaction(app_id, token)
        return Reply(200, self._message_json(self._webhook_message(interaction, message_id)))

    async def _webhook_edit_message(self, request: ApiRequest, app_id: str, token: str, message_id: str) -> Reply:
        interaction = self._webhook_interaction(app_id, token)
        message = self._webhook_message(interaction, message_id)
        payload = request.json if isinstance(request.json, dict) else {}
        await self._edit_message(message, payload, request.files)
        return Reply(200, self._message_json(message))

    async def _webhook_delete_message(self, request: ApiRequest, app_id: str, token: str, message_id: str) -> Reply:
        interaction = self._webhook_interaction(app_id, token)
        await self._delete_message(self._webhook_message(interaction, message_id))
        return Reply(204)
