"""REST routes: application commands (the bot syncs them; the driver runs them)."""

from __future__ import annotations

import re
from typing import Any

from ..api import ApiError, ApiRequest, Reply, RouteRow
from ..records import OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP
from ..state import FakeState


class CommandRoutes(FakeState):
    """``/applications/{app_id}/commands`` globally and per guild: list, overwrite, create."""

    def _command_routes(self) -> list[RouteRow]:
        return [
            ("GET", "/applications/{app_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{app_id}/commands", self._put_commands, True),
            ("POST", "/applications/{app_id}/commands", self._post_command, True),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self._post_command, True),
        ]

    def _check_app(self, app_id: str) -> None:
        if app_id != self.application_id:
            raise ApiError(404, 10002, "Unknown Application", kind="invalid_body")

    def _command_errors(self, command: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        name = str(command.get("name") or "")
        kind = int(command.get("type") or 1)
        if kind == 1:
            if not re.fullmatch(r"[-_'\w]{1,32}", name) or name != name.lower():
                errors["name"] = {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME",
                                               "message": "Command name is invalid"}]}
            if not 1 <= len(command.get("description") or "") <= 100:
                errors["description"] = {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH",
                                                      "message": "Must be between 1 and 100 in length."}]}
        options = command.get("options") or []
        if len(options) > 25:
            errors["options"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                              "message": "Must be 25 or fewer in length."}]}
        seen_optional = False
        for index, option in enumerate(options):
            if option.get("type") in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP):
                nested = self._command_errors({**option, "type": 1})
                if nested:
                    errors.setdefault("options", {})[str(index)] = nested
                continue
            if option.get("required"):
                if seen_optional:
                    errors.setdefault("options", {})[str(index)] = {"required": {"_errors": [{
                        "code": "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "message": "Required options must be placed before non-required options"}]}}
            else:
                seen_optional = True
            if len(option.get("choices") or []) > 25:
                errors.setdefault("options", {})[str(index)] = {"choices": {"_errors": [{
                    "code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}]}}
        return errors

    def _store_command(self, scope: str | None, command: dict[str, Any]) -> dict[str, Any]:
        kind = int(command.get("type") or 1)
        key = (scope, str(command.get("name")), kind)
        command_id = self._command_ids.setdefault(key, self.ids.next())
        stored = {
            "id": command_id,
            "application_id": self.application_id,
            "version": self.ids.next(),
            "type": kind,
            "default_member_permissions": None,
            "nsfw": False,
            "options": [],
            **command,
        }
        if scope is not None:
            stored["guild_id"] = scope
        return stored

    async def _put_commands(self, request: ApiRequest, app_id: str, guild_id: str | None = None) -> Reply:
        self._check_app(app_id)
        if guild_id is not None:
            self._guild(guild_id)
        commands = request.json
        if not isinstance(commands, list):
            raise ApiError(400, 50035, "Invalid Form Body", kind="invalid_body")
        errors = {str(index): problems for index, command in enumerate(commands)
                  if (problems := self._command_errors(command))}
        names = [(command.get("name"), command.get("type") or 1) for command in commands]
        if len(set(names)) != len(names):
            errors["_errors"] = [{"code": "APPLICATION_COMMANDS_DUPLICATE_NAME", "message": "Duplicate names"}]
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors=errors, kind="invalid_body")
        stored = [self._store_command(guild_id, command) for command in commands]
        self.commands[guild_id] = stored
        return Reply(200, stored)

    async def _post_command(self, request: ApiRequest, app_id: str, guild_id: str | None = None) -> Reply:
        self._check_app(app_id)
        command = request.json or {}
        errors = self._command_errors(command)
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors=errors, kind="invalid_body")
        stored = self._store_command(guild_id, command)
        others = [existing for existing in self.commands.get(guild_id, []) if existing["id"] != stored["id"]]
        self.commands[guild_id] = [*others, stored]
        return Reply(201, stored)

    async def _get_commands(self, request: ApiRequest, app_id: str, guild_id: str | None = None) -> Reply:
        self._check_app(app_id)
        return Reply(200, list(self.commands.get(guild_id, [])))
