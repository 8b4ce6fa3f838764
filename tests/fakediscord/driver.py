"""The driver: what users do, injected over the gateway (slash commands, autocomplete, clicks, modals,
messages, reactions, members joining) and what Discord does to the bot's session (drops, dead tokens)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from .commands import SCALAR_OPTIONS, CommandUnavailable, check_available, checked_scalar
from .entities import FakeChannel, FakeGuild, FakeRole, FakeUser
from .gateway import INTENT_GUILD_MEMBERS
from .messages import MessageStore
from .permissions import ALL_PERMISSIONS
from .records import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    MSG_REPLY,
    OPT_ATTACHMENT,
    OPT_CHANNEL,
    OPT_MENTIONABLE,
    OPT_ROLE,
    OPT_SUB_COMMAND,
    OPT_SUB_COMMAND_GROUP,
    OPT_USER,
    Interaction,
    StoredMessage,
    Upload,
    iter_components,
)
from .snowflake import iso_timestamp


class Driver(MessageStore):
    """Injection: each method is one thing a user (or Discord) does; it raises where Discord's client would
    not let the user do it."""

    # ------------------------------------------------------------------ injection: interactions

    def _where(
        self, user: FakeUser | None, channel: FakeChannel | None, guild: FakeGuild | None
    ) -> tuple[FakeUser, FakeChannel, FakeGuild | None]:
        user = user or self.world.alice
        channel = channel or self.world.general
        channel_guild = self.world.guild_of(channel)
        if guild is not None and (channel_guild is None or guild.id != channel_guild.id):
            raise ValueError(f"channel {channel.name or channel.id} is not in guild {guild.name}")
        if channel_guild is not None and channel_guild.member(user.id) is None:
            raise ValueError(f"{user.username} is not a member of {channel_guild.name}")
        if channel.is_dm and all(recipient.id != user.id for recipient in channel.recipients):
            raise ValueError(f"{user.username} is not in DM channel {channel.id}")
        return user, channel, channel_guild

    async def _inject(
        self,
        kind: int,
        name: str,
        data: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        guild: FakeGuild | None,
        *,
        message: StoredMessage | None = None,
        parent: Interaction | None = None,
    ) -> Interaction:
        if self.gateway.session is None:
            raise RuntimeError("no bot session on the fake gateway: start the bot and wait until it is ready")
        interaction = Interaction(
            fake=self,
            id=self.ids.next(),
            token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
            type=kind,
            name=name,
            data=data,
            user=user,
            channel=channel,
            guild=guild,
            created_at=self.now(),
            source_message_id=message.id if message is not None else None,
            parent=parent,
        )
        self.interactions.append(interaction)
        self._by_token[interaction.token] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", self._interaction_payload(interaction, message))
        return interaction

    def _find_command(self, name: str, guild: FakeGuild | None) -> tuple[dict[str, Any], str | None]:
        scopes: list[str | None] = ([guild.id] if guild else []) + [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and int(command.get("type") or 1) == 1:
                    return command, scope
        synced = sorted({command["name"] for commands in self.commands.values() for command in commands})
        raise CommandUnavailable(f"/{name} is not synced (synced: {', '.join(synced) or 'nothing'})")

    def _option_value(
        self, option: dict[str, Any], value: Any, resolved: dict[str, dict[str, Any]], channel: FakeChannel,
        guild: FakeGuild | None
    ) -> Any:
        kind, name = option["type"], option["name"]
        if kind in SCALAR_OPTIONS:
            return checked_scalar(option, value)
        if kind in (OPT_USER, OPT_MENTIONABLE) and isinstance(value, FakeUser):
            resolved.setdefault("users", {})[value.id] = value.to_json()
            if guild is not None:
                member = self._member_json(guild, value, with_user=False, channel=channel, with_permissions=True)
                if member is not None:
                    resolved.setdefault("members", {})[value.id] = member
            return value.id
        elif kind in (OPT_ROLE, OPT_MENTIONABLE) and isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[value.id] = value.to_json()
            return value.id
        elif kind == OPT_CHANNEL and isinstance(value, FakeChannel):
            data = value.to_json()
            data["permissions"] = str(guild.permissions_for(self.world.bot.id, value) if guild else ALL_PERMISSIONS)
            resolved.setdefault("channels", {})[value.id] = data
            return value.id
        elif kind == OPT_ATTACHMENT and isinstance(value, Upload):
            attachment = self._store_attachment(channel.id, value, ephemeral=True)
            resolved.setdefault("attachments", {})[attachment.id] = attachment.to_json()
            return attachment.id
        raise ValueError(f"option {name!r} (type {kind}) cannot take {value!r}")

    def _build_options(
        self, schema: list[dict[str, Any]], given: Mapping[str, Any], resolved: dict[str, dict[str, Any]],
        channel: FakeChannel, guild: FakeGuild | None
    ) -> list[dict[str, Any]]:
        by_name = {option["name"]: option for option in schema}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; the command has {sorted(by_name)}")
        options = []
        for option in schema:
            name = option["name"]
            if name not in given:
                if option.get("required"):
                    raise ValueError(f"required option {name!r} is missing")
                continue
            value = self._option_value(option, given[name], resolved, channel, guild)
            options.append({"name": name, "type": option["type"], "value": value})
        return options

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
        guild: FakeGuild | None = None,
        *,
        force: bool = False,
    ) -> Interaction:
        """A user runs ``/name`` (``"group sub"`` for subcommands) with ``options`` by name.

        Option types come from the synced command; users, roles and channels are passed as the fake's
        objects, attachments as :class:`Upload`. Raises :class:`CommandUnavailable` where Discord's client
        would not offer the command (``force=True`` sends it anyway) and ValueError for bad options.
        Defaults: alice in #general.
        """
        user, channel, guild = self._where(user, channel, guild)
        path = name.split()
        command, scope = self._find_command(path[0], guild)
        if not force:
            check_available(command, user, channel, guild)
        schema: list[dict[str, Any]] = command.get("options") or []
        nesting: list[dict[str, Any]] = []
        for part in path[1:]:
            sub = next((option for option in schema if option["name"] == part
                        and option["type"] in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP)), None)
            if sub is None:
                raise CommandUnavailable(f"/{name}: no subcommand {part!r}")
            nesting.append(sub)
            schema = sub.get("options") or []
        if any(option["type"] in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP) for option in schema):
            raise ValueError(f"/{name} needs a subcommand: {[option['name'] for option in schema]}")
        resolved: dict[str, dict[str, Any]] = {}
        built = self._build_options(schema, options or {}, resolved, channel, guild)
        for sub in reversed(nesting):
            built = [{"name": sub["name"], "type": sub["type"], "options": built}]
        data: dict[str, Any] = {"id": command["id"], "name": path[0], "type": 1, "options": built}
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = scope
        return await self._inject(APPLICATION_COMMAND, name, data, user, channel, guild)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        user: FakeUser | None = None,
        channel: FakeChannel | None = None,
    ) -> Interaction:
        """A user is typing option ``focused`` of ``/name``: an autocomplete interaction (type 4).

        ``options`` holds what is typed so far (the focused value is sent as a string, as Discord does);
        the bot's choices end up in ``interaction.callback_data["choices"]``.
        """
        user, channel, guild = self._where(user, channel, None)
        path = name.split()
        command, scope = self._find_command(path[0], guild)
        schema: list[dict[str, Any]] = command.get("options") or []
        nesting: list[dict[str, Any]] = []
        for part in path[1:]:
            sub = next((option for option in schema if option["name"] == part), None)
            if sub is None:
                raise CommandUnavailable(f"/{name}: no subcommand {part!r}")
            nesting.append(sub)
            schema = sub.get("options") or []
        by_name = {option["name"]: option for option in schema}
        if focused not in by_name or not by_name[focused].get("autocomplete"):
            raise ValueError(f"option {focused!r} of /{name} has no autocomplete")
        built: list[dict[str, Any]] = []
        for key, value in options.items():
            if key not in by_name:
                raise ValueError(f"unknown option {key!r}")
            option = {"name": key, "type": by_name[key]["type"], "value": str(value) if key == focused else value}
            if key == focused:
                option["focused"] = True
            built.append(option)
        if focused not in options:
            built.append({"name": focused, "type": by_name[focused]["type"], "value": "", "focused": True})
        for sub in reversed(nesting):
            built = [{"name": sub["name"], "type": sub["type"], "options": built}]
        data: dict[str, Any] = {"id": command["id"], "name": path[0], "type": 1, "options": built}
        if scope is not None:
            data["guild_id"] = scope
        return await self._inject(AUTOCOMPLETE, name, data, user, channel, guild)

    async def click(
        self,
        message: StoredMessage | str,
        custom_id: str,
        user: FakeUser | None = None,
        *,
        values: Sequence[str] | None = None,
    ) -> Interaction:
        """A user clicks the button (or picks ``values`` in the select) ``custom_id`` on ``message``."""
        stored = message if isinstance(message, StoredMessage) else self.message(message)
        if stored.deleted:
            raise ValueError(f"message {stored.id} was deleted")
        component = stored.find_component(custom_id)
        if component is None:
            raise LookupError(f"no component {custom_id!r} on message {stored.id} (has {stored.custom_ids()})")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        channel = self.world.channels[stored.channel_id]
        user, channel, guild = self._where(user, channel, None)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if "id" in component:
            data["id"] = component["id"]
        if component["type"] == 2:
            if values is not None:
                raise ValueError(f"{custom_id!r} is a button: no values")
        else:
            picked = list(values or [])
            low, high = component.get("min_values", 1), component.get("max_values", 1)
            if not low <= len(picked) <= high:
                raise ValueError(f"select {custom_id!r} takes {low}..{high} values, not {picked}")
            if component["type"] == 3:
                offered = [option["value"] for option in component.get("options") or []]
                bad = [value for value in picked if value not in offered]
                if bad:
                    raise ValueError(f"select {custom_id!r} offers {offered}, not {bad}")
            data["values"] = picked
        return await self._inject(MESSAGE_COMPONENT, custom_id, data, user, channel, guild, message=stored)

    async def submit_modal(
        self, interaction: Interaction, values: Mapping[str, str], user: FakeUser | None = None
    ) -> Interaction:
        """The user submits the modal the bot opened in answer to ``interaction`` (text inputs by custom id)."""
        modal = interaction.modal
        if modal is None:
            raise ValueError(f"the bot opened no modal for {interaction.name!r}")
        user = user or interaction.user
        inputs = [component for component in iter_components(modal.get("components") or [])
                  if component.get("type") == 4]
        known = {component["custom_id"] for component in inputs}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"modal has no inputs {unknown} (has {sorted(known)})")
        for component in inputs:
            if component.get("required", True) and not values.get(component["custom_id"]):
                raise ValueError(f"modal input {component['custom_id']!r} is required")

        def answer(component: dict[str, Any]) -> dict[str, Any]:
            return {"type": 4, "custom_id": component["custom_id"], "value": values.get(component["custom_id"], "")}

        rows: list[dict[str, Any]] = []
        for top in modal.get("components") or []:
            if top.get("type") == 1:
                rows.append({"type": 1, "components": [answer(child) for child in top.get("components") or []
                                                       if child.get("type") == 4]})
            elif top.get("type") == 18 and (top.get("component") or {}).get("type") == 4:
                rows.append({"type": 18, "component": answer(top["component"])})
        data = {"custom_id": modal["custom_id"], "components": rows}
        source = self.message(interaction.source_message_id) if interaction.source_message_id else None
        return await self._inject(MODAL_SUBMIT, modal["custom_id"], data, user, interaction.channel,
                                  interaction.guild, message=source, parent=interaction)

    # ------------------------------------------------------------------ injection: messages, reactions, gateway

    async def say(
        self,
        channel: FakeChannel | None = None,
        content: str = "",
        user: FakeUser | None = None,
        attachments: Sequence[Upload | tuple[str, bytes]] = (),
        *,
        reply_to: StoredMessage | None = None,
    ) -> StoredMessage:
        """A user posts a message (MESSAGE_CREATE with author, member and guild_id). Defaults: alice in #general."""
        user, channel, guild = self._where(user, channel, None)
        message = StoredMessage(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=guild.id if guild else None,
            author=user,
            created_at=self.now(),
            timestamp=iso_timestamp(),
            content=content,
        )
        for item in attachments:
            upload = item if isinstance(item, Upload) else Upload(item[0], item[1])
            message.attachments.append(self._store_attachment(channel.id, upload))
        message.mention_ids, message.mention_everyone = self._mentions(content, None)
        if reply_to is not None:
            message.type = MSG_REPLY
            message.message_reference = {"type": 0, "message_id": reply_to.id, "channel_id": reply_to.channel_id}
            if guild is not None:
                message.message_reference["guild_id"] = guild.id
        self._messages[message.id] = message
        self.changed()
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def react(self, message: StoredMessage | str, emoji: str, user: FakeUser | None = None) -> None:
        """A user adds a reaction (``"👍"`` or ``"name:id"``): MESSAGE_REACTION_ADD."""
        stored = message if isinstance(message, StoredMessage) else self.message(message)
        if stored.ephemeral or stored.deleted:
            raise ValueError(f"message {stored.id} is ephemeral or deleted: nobody can react to it")
        user, _, _ = self._where(user, self.world.channels[stored.channel_id], None)
        await self._reaction_added(stored, user, emoji)

    async def unreact(self, message: StoredMessage | str, emoji: str, user: FakeUser | None = None) -> None:
        """A user removes their reaction: MESSAGE_REACTION_REMOVE."""
        stored = message if isinstance(message, StoredMessage) else self.message(message)
        user, _, _ = self._where(user, self.world.channels[stored.channel_id], None)
        await self._reaction_removed(stored, user, emoji)

    async def add_member(self, username: str, *, roles: Sequence[FakeRole] = ()) -> FakeUser:
        """A new member joins the default guild (GUILD_MEMBER_ADD, with the members intent)."""
        user = self.make_user(username, roles=roles)
        guild = self.world.guild
        member = guild.members[user.id].to_json()
        await self.gateway.dispatch("GUILD_MEMBER_ADD", {**member, "guild_id": guild.id}, intent=INTENT_GUILD_MEMBERS)
        return user

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user`` (for ``slash``/``say`` in DMs)."""
        return self.world.dm_channel(user)

    async def drop_gateway(self, *, code: int | None = 4000, resumable: bool = True) -> None:
        """Close the bot's gateway socket (``code=None``: abort the TCP connection) so that it reconnects and
        RESUMEs; events sent meanwhile are replayed. ``resumable=False``: the RESUME gets INVALID_SESSION."""
        self.gateway.drop(code=code, resumable=resumable)

    async def wait_gateway_ready(self, *, resumes: int = 0, identifies: int = 1, timeout: float = 10.0) -> None:
        """Wait until the gateway saw ``identifies`` IDENTIFYs, ``resumes`` successful RESUMEs, and is live."""
        await self.wait_for(
            lambda: self.gateway.connected
            and len(self.gateway.identifies) >= identifies
            and sum(1 for resume in self.gateway.resumes if resume.ok) >= resumes,
            timeout,
            f"{identifies} identify(s), {resumes} resume(s) and a live gateway",
        )

    def expire_token(self, token: str | Interaction) -> None:
        """Make an interaction token dead: webhook calls then answer 404 10015 Unknown Webhook."""
        interaction = token if isinstance(token, Interaction) else self._by_token[token]
        interaction.expired = True
        self.changed()
