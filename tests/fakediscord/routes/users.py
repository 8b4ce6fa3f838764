"""REST routes: the gateway, users and DMs, the application, guilds, roles and members."""

from __future__ import annotations

from ..api import ApiError, ApiRequest, Reply, RouteRow
from ..payloads import PayloadBuilders


class UserRoutes(PayloadBuilders):
    """``/gateway``, ``/users``, ``/applications/@me`` and ``/guilds`` (read only)."""

    def _user_routes(self) -> list[RouteRow]:
        return [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/guilds/{guild_id}", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
        ]

    async def _get_gateway(self, request: ApiRequest) -> Reply:
        return Reply(200, {"url": self.gateway_url})

    async def _get_gateway_bot(self, request: ApiRequest) -> Reply:
        # An auto-sharded client connects to this url (not DEFAULT_GATEWAY) and IDENTIFYs with
        # "shard": [0, 1]. One shard: the fake gateway holds one session at a time.
        return Reply(
            200,
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            },
        )

    async def _get_me(self, request: ApiRequest) -> Reply:
        return Reply(200, self.bot_user_json())

    async def _get_user(self, request: ApiRequest, user_id: str) -> Reply:
        user = self.world.users.get(user_id)
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return Reply(200, user.to_json())

    async def _get_application(self, request: ApiRequest) -> Reply:
        return Reply(200, self._application_json())

    async def _create_dm(self, request: ApiRequest) -> Reply:
        recipient_id = str((request.json or {}).get("recipient_id"))
        user = self.world.users.get(recipient_id)
        if user is None:
            raise ApiError(400, 50035, "Invalid Form Body", kind="invalid_body",
                           errors={"recipient_id": {"_errors": [{"code": "NUMBER_TYPE_COERCE",
                                                                 "message": "Unknown user"}]}})
        return Reply(200, self.world.dm_channel(user).to_json())

    async def _get_guild(self, request: ApiRequest, guild_id: str) -> Reply:
        return Reply(200, self._guild(guild_id).to_json())

    async def _get_guild_channels(self, request: ApiRequest, guild_id: str) -> Reply:
        return Reply(200, [channel.to_json() for channel in self._guild(guild_id).channels])

    async def _get_guild_roles(self, request: ApiRequest, guild_id: str) -> Reply:
        return Reply(200, [role.to_json() for role in self._guild(guild_id).roles])

    async def _get_member(self, request: ApiRequest, guild_id: str, user_id: str) -> Reply:
        guild = self._guild(guild_id)
        member = guild.member(user_id)
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return Reply(200, member.to_json())
