"""What the fake knows (world, messages, interactions, commands, calls, errors) and how tests wait on it.

:class:`FakeState` is the base of every room of :class:`tests.fakediscord.FakeDiscord`: the route groups
(``routes/``), the payload builders, the message store and the driver all read and change this state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from aiohttp import web

from .api import API_PREFIX, ApiError, Route
from .entities import FakeChannel, FakeGuild, FakeRole, FakeUser
from .faults import ChannelLimiter, Faults, RateLimit
from .gateway import Gateway
from .openapi import OpenApiCheck
from .permissions import ALL_PERMISSIONS, VIEW_CHANNEL
from .records import FakeError, Interaction, RecordedCall, StoredAttachment, StoredMessage
from .snowflake import SnowflakeFactory
from .world import World

log = logging.getLogger(__name__)

DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """``wait_for`` ran out of time; the message says what was awaited and what the fake saw."""


class FakeState:
    """The fake's state and its queries; the constructor's settings are documented on ``FakeDiscord``."""

    def __init__(
        self,
        world: World | None = None,
        *,
        callback_deadline: float | None = 3.0,
        token_lifetime: float = 15 * 60.0,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_LIMIT,
        host: str = "127.0.0.1",
        channel_rate_limit: RateLimit | None = None,
        openapi: bool = True,
    ) -> None:
        self.ids = world.ids if world is not None else SnowflakeFactory()
        self.world = world or World.default(self.ids)
        self.callback_deadline = callback_deadline
        self.token_lifetime = token_lifetime
        self.attachment_size_limit = attachment_size_limit
        self.host = host
        self.channel_rate_limit = channel_rate_limit
        self.rate_limited: list[RecordedCall] = []
        self.openapi = OpenApiCheck.load() if openapi else None
        self.limiter = ChannelLimiter()
        self.port = 0
        self.gateway = Gateway(self)
        self.calls: list[RecordedCall] = []
        self.errors: list[FakeError] = []
        self.interactions: list[Interaction] = []
        self.commands: dict[str | None, list[dict[str, Any]]] = {}
        self.faults = Faults()
        self.cdn_requests: list[str] = []
        self._messages: dict[str, StoredMessage] = {}
        self._attachments: dict[str, StoredAttachment] = {}
        self._by_token: dict[str, Interaction] = {}
        self._command_ids: dict[tuple[str | None, str, int], str] = {}
        self._event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes: list[Route] = []  # the REST routes, built by FakeDiscord.start

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be: ``http://127.0.0.1:PORT/api/v10``."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be: ``ws://127.0.0.1:PORT/gateway``."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """The ``resume_gateway_url`` READY hands out (same server, its own path, so tests can tell)."""
        return f"ws://{self.host}:{self.port}/gateway/resume"

    @property
    def application_id(self) -> str:
        """The application id (the bot user's id, as for real bots)."""
        return self.world.bot.id

    @property
    def bot_user(self) -> FakeUser:
        """The bot's user."""
        return self.world.bot

    def bot_env(self, token: str = "fake-token") -> dict[str, str]:
        """The environment that points the bot at this fake."""
        return {
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_TOKEN": token,
        }

    @contextlib.contextmanager
    def patched_discord_py(self) -> Iterator[None]:
        """Point an in-process discord.py at this fake (``Route.BASE``, ``DEFAULT_GATEWAY``); restore on exit."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # ------------------------------------------------------------------ waiting and errors

    @staticmethod
    def now() -> float:
        """The clock every record uses (``time.monotonic``, the event loop's clock)."""
        return time.monotonic()

    def changed(self) -> None:
        """Wake everything in :meth:`wait_for` (called after every change)."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str | None = None) -> T:
        """The first truthy value of ``predicate()``, re-checked on every change (and every 50 ms).

        Raises :class:`WaitTimeout` (an AssertionError) with the recent calls and errors after ``timeout``.
        """
        deadline = self.now() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - self.now()
            if remaining <= 0:
                raise WaitTimeout(self._timeout_report(what or getattr(predicate, "__name__", "a condition"), timeout))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 0.05))

    def _timeout_report(self, what: str, timeout: float) -> str:
        lines = [f"timed out after {timeout:.1f}s waiting for {what}", "last REST calls:"]
        lines.extend(f"  {call!r}" for call in self.calls[-15:])
        if self.errors:
            lines.append("errors:")
            lines.extend(f"  {error.kind}: {error.message}" for error in self.errors)
        lines.append(f"gateway connected: {self.gateway.connected}")
        return "\n".join(lines)

    async def wait_for_call(
        self, method: str, path_regex: str, *, status: int | None = None, after: float = 0.0, timeout: float = 10.0
    ) -> RecordedCall:
        """The first recorded call (at or after ``after``) matching method, path regex and status."""
        pattern = re.compile(path_regex)

        def find() -> RecordedCall | None:
            for call in self.calls:
                if call.at >= after and call.method == method and pattern.search(call.path):
                    if status is None or call.status == status:
                        return call
            return None

        return await self.wait_for(find, timeout, f"{method} {path_regex}")

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        channel: FakeChannel | None = None,
        timeout: float = 10.0,
    ) -> StoredMessage:
        """The first live message (in ``channel`` when given) for which ``predicate`` holds."""

        def find() -> StoredMessage | None:
            for message in self.messages(channel):
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.wait_for(find, timeout, "a matching message")

    def record_error(self, kind: str, message: str, *, method: str | None = None, path: str | None = None) -> None:
        """Note something real Discord would refuse (tests assert ``errors`` is empty)."""
        log.warning("fake Discord error %s: %s %s %s", kind, method or "", path or "", message)
        self.errors.append(FakeError(kind, message, method, path))
        self.changed()

    def take_errors(self, kind: str | None = None) -> list[FakeError]:
        """Remove and return the errors of ``kind`` (all when None): for tests that provoke them."""
        taken = [error for error in self.errors if kind is None or error.kind == kind]
        self.errors = [error for error in self.errors if error not in taken]
        return taken

    def assert_no_errors(self) -> None:
        """Fail with every recorded error listed."""
        if self.errors:
            listing = "\n".join(f"  {error.kind}: {error.method or ''} {error.path or ''} {error.message}"
                                for error in self.errors)
            raise AssertionError(f"the fake Discord saw {len(self.errors)} error(s):\n{listing}")

    # ------------------------------------------------------------------ queries

    def message(self, message_id: str) -> StoredMessage:
        """A stored message by id (deleted ones too); KeyError when unknown."""
        return self._messages[str(message_id)]

    def messages(
        self,
        channel: FakeChannel | None = None,
        *,
        include_deleted: bool = False,
        include_ephemeral: bool = True,
        author: FakeUser | None = None,
    ) -> list[StoredMessage]:
        """Stored messages, oldest first."""
        return [
            message
            for message in self._messages.values()
            if (channel is None or message.channel_id == channel.id)
            and (include_deleted or not message.deleted)
            and (include_ephemeral or not message.ephemeral)
            and (author is None or message.author.id == author.id)
        ]

    def bot_messages(self, channel: FakeChannel | None = None) -> list[StoredMessage]:
        """Live messages the bot wrote."""
        return self.messages(channel, author=self.world.bot)

    def calls_to(self, method: str | None = None, path_regex: str | None = None) -> list[RecordedCall]:
        """Recorded REST calls filtered by method and a regex searched in the path (after ``/api/v10``)."""
        pattern = re.compile(path_regex) if path_regex else None
        return [
            call
            for call in self.calls
            if (method is None or call.method == method) and (pattern is None or pattern.search(call.path))
        ]

    def interaction(self, token: str) -> Interaction:
        """The interaction with this token; KeyError when unknown."""
        return self._by_token[token]

    def synced_commands(self, guild: FakeGuild | None = None) -> list[dict[str, Any]]:
        """The commands last synced globally (or for ``guild``)."""
        return list(self.commands.get(guild.id if guild else None, []))

    @property
    def identified(self) -> bool:
        """Whether a bot has IDENTIFYed and its session is live."""
        return self.gateway.connected

    def make_user(
        self,
        username: str,
        *,
        roles: Sequence[FakeRole] = (),
        in_guild: bool = True,
        accepts_dms: bool = True,
    ) -> FakeUser:
        """A new user, by default a member of the default guild with ``roles``."""
        return self.world.add_user(
            username,
            guild=self.world.guild if in_guild else None,
            role_ids=[role.id for role in roles],
            accepts_dms=accepts_dms,
        )

    # ------------------------------------------------------------------ lookups for route handlers

    def _channel(self, channel_id: str) -> FakeChannel:
        channel = self.world.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _bot_permissions(self, channel: FakeChannel) -> int:
        guild = self.world.guild_of(channel)
        return ALL_PERMISSIONS if guild is None else guild.permissions_for(self.world.bot.id, channel)

    def _require(self, channel: FakeChannel, permission: int) -> None:
        permissions = self._bot_permissions(channel)
        if not permissions & VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        if permission and not permissions & permission:
            raise ApiError(403, 50013, "Missing Permissions")

    def _channel_message(self, channel_id: str, message_id: str) -> StoredMessage:
        message = self._messages.get(message_id)
        if message is None or message.deleted or message.ephemeral or message.channel_id != channel_id:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def _guild(self, guild_id: str) -> FakeGuild:
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild
