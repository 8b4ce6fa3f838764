"""A loopback Discord for end-to-end tests: REST under ``/api/v10``, a gateway, recording, injection.

Start it from async test code and point discord.py (in-process or the real bot as a subprocess) at it::

    async with FakeDiscord() as fake:
        env = fake.bot_env()          # DISCORD_API_BASE, DISCORD_GATEWAY_URL, DISCORD_TOKEN
        ...
        interaction = await fake.slash("imagine", {"prompt": "a red fox"})
        assert await interaction.wait_callback() == 5
        [message] = await interaction.wait_messages(lambda messages: len(messages) == 1)
        fake.assert_no_errors()

Everything runs on the test's event loop; no threads. What real Discord would refuse (unknown routes,
bodies over the limits, a second acknowledgement, a callback after 3 s, ...) is answered the way
Discord answers it *and* recorded in ``fake.errors``, which a fixture asserts empty at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from .gateway import (
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    Gateway,
)
from .openapi import OpenApiCheck
from .records import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    FLAG_EPHEMERAL,
    FLAG_IS_COMPONENTS_V2,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    FakeError,
    Interaction,
    RecordedCall,
    StoredAttachment,
    StoredMessage,
    Upload,
    UploadedFile,
    iter_components,
)
from .snowflake import SnowflakeFactory, iso_timestamp
from .validation import flatten_errors, validate_message
from .world import (
    ALL_PERMISSIONS,
    ATTACH_FILES,
    MANAGE_MESSAGES,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    FakeChannel,
    FakeGuild,
    FakeRole,
    FakeUser,
    World,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
JSON_TYPE = "application/json"
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
T = TypeVar("T")

# Application command option types.
OPT_SUB_COMMAND = 1
OPT_SUB_COMMAND_GROUP = 2
OPT_STRING = 3
OPT_INTEGER = 4
OPT_BOOLEAN = 5
OPT_USER = 6
OPT_CHANNEL = 7
OPT_ROLE = 8
OPT_MENTIONABLE = 9
OPT_NUMBER = 10
OPT_ATTACHMENT = 11

# Message types.
MSG_DEFAULT = 0
MSG_REPLY = 19
MSG_CHAT_INPUT_COMMAND = 20

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_CUSTOM_EMOJI_RE = re.compile(r"^(?:a:)?([\w~]{1,32}):(\d+)$")


class ApiError(Exception):
    """An error answer, Discord style: ``{"code": ..., "message": ...}`` (``kind`` also records a FakeError)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """The JSON body Discord sends with this error."""
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


class WaitTimeout(AssertionError):
    """``wait_for`` ran out of time; the message says what was awaited and what the fake saw."""


class CommandUnavailable(Exception):
    """Real Discord would not let this user run this command here (not synced, no permission, DM, nsfw)."""


@dataclass
class ApiRequest:
    """A parsed REST request: JSON body (``payload_json`` for multipart) and uploaded files."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    authorized: bool


@dataclass
class Reply:
    """What a route handler answers: ``body`` None with status 204 means no content."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Fault:
    """An injected failure for the next ``remaining`` calls matching ``method`` and ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    remaining: int
    is_global: bool = False
    code: int = 0
    uploads_only: bool = False  # only requests that upload at least one file (a result, not a status edit)
    hits: list[RecordedCall] = field(default_factory=list)

    def reply(self) -> Reply:
        """The answer: a 429 the way Discord sends it (body, Retry-After, Via), or a plain error."""
        if self.status == 429:
            headers = {
                "Retry-After": str(max(1, math.ceil(self.retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
                "X-RateLimit-Scope": "global" if self.is_global else "user",
                "Via": "1.1 google",
            }
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": self.is_global}
            return Reply(429, body, headers)
        return Reply(self.status, {"message": f"{self.status}: injected fault", "code": self.code})


NONCE_WINDOW_S = 5 * 60.0  # how long Discord remembers an enforced nonce (a few minutes)


@dataclass(frozen=True)
class RateLimit:
    """Discord's per-channel limit on message creates and on message edits: ``count`` per ``per`` seconds.

    Creates (``POST /channels/{c}/messages``, interaction follow-ups) and edits (``PATCH`` of a channel
    message or of an interaction's message) have a bucket each per channel; an interaction's webhook
    messages count against the channel it was used in. Over the limit the fake answers 429 as Discord
    does: ``X-RateLimit-*`` headers (with the bucket), ``Retry-After``, ``retry_after`` in the body and
    ``Via`` (without it discord.py takes a 429 for a Cloudflare ban). Successful calls carry the headers too.
    """

    count: int = 5
    per: float = 5.0


@dataclass
class _Bucket:
    started: float
    used: int = 0


# Route templates under the per-channel limit, and which of its two buckets each uses.
_LIMITED_ROUTES: dict[str, str] = {
    "/channels/{channel_id}/messages": "create",
    "/webhooks/{app_id}/{token}": "create",
    "/channels/{channel_id}/messages/{message_id}": "edit",
    "/webhooks/{app_id}/{token}/messages/{message_id}": "edit",
}


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Callable[..., Awaitable[Reply]]
    auth: bool


def _route_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")


def _emoji_json(emoji: str) -> dict[str, Any]:
    match = _CUSTOM_EMOJI_RE.match(emoji)
    if match:
        return {"id": match.group(2), "name": match.group(1), "animated": emoji.startswith("a:")}
    return {"id": None, "name": emoji}


def _emoji_key(emoji: str) -> str:
    match = _CUSTOM_EMOJI_RE.match(emoji)
    return f"{match.group(1)}:{match.group(2)}" if match else emoji


class FakeDiscord:
    """The fake Discord: an aiohttp server on 127.0.0.1 (a free port), records, and an injection API.

    ``callback_deadline``: seconds within which an interaction must be acknowledged (Discord: 3); a later
    callback gets 404 10062 and an ``interaction_timeout`` error; None turns the check off.
    ``token_lifetime``: seconds an interaction token works for webhooks (Discord: 15 minutes).
    ``channel_rate_limit``: a :class:`RateLimit` on message creates and edits per channel (None: no limit);
    the calls it refused are in ``rate_limited``.
    ``openapi``: check every request against Discord's OpenAPI description (``../shared/discord-openapi.json``)
    when that file exists; what it finds is recorded as ``openapi`` errors.
    """

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
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.port = 0
        self.gateway = Gateway(self)
        self.calls: list[RecordedCall] = []
        self.errors: list[FakeError] = []
        self.interactions: list[Interaction] = []
        self.commands: dict[str | None, list[dict[str, Any]]] = {}
        self.faults: list[Fault] = []
        self.cdn_requests: list[str] = []
        self._messages: dict[str, StoredMessage] = {}
        self._attachments: dict[str, StoredAttachment] = {}
        self._by_token: dict[str, Interaction] = {}
        self._command_ids: dict[tuple[str | None, str, int], str] = {}
        self._event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on a free port of ``host``."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/resume", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", "/{tail:.*}", self._handle_api)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("fake Discord listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close the gateway sockets and the server."""
        if self._runner is None:
            return
        await self.gateway.close_all()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

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

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: float = 1.0,
        count: int = 1,
        *,
        is_global: bool = False,
        code: int = 0,
        uploads_only: bool = False,
    ) -> Fault:
        """Answer the next ``count`` calls matching ``method`` and ``path_regex`` (searched in the path after
        ``/api/v10``) with ``status``: a Discord 429 (Retry-After, ``retry_after`` body, ``Via``) or an error.
        ``uploads_only``: only calls that upload a file (a status edit and a result's upload share a path)."""
        fault = Fault(
            method.upper(), re.compile(path_regex), status, retry_after, count, is_global, code, uploads_only
        )
        self.faults.append(fault)
        return fault

    def fail_next_upload(
        self, method: str, path_regex: str, status: int = 429, retry_after: float = 1.0, count: int = 1
    ) -> Fault:
        """Like :meth:`fail_next`, for requests that upload at least one file."""
        return self.fail_next(method, path_regex, status, retry_after, count, uploads_only=True)

    def _take_fault(self, method: str, path: str, *, uploads: bool = False) -> Fault | None:
        for fault in self.faults:
            if fault.uploads_only and not uploads:
                continue
            if fault.remaining > 0 and fault.method == method and fault.pattern.search(path):
                fault.remaining -= 1
                return fault
        return None

    # ------------------------------------------------------------------ rate limits

    def _rate_limit(self, route: _Route, params: dict[str, str]) -> tuple[Reply | None, dict[str, str]]:
        """(a 429 to answer instead, or None; the rate-limit headers of a call that goes through)."""
        limit = self.channel_rate_limit
        kind = _LIMITED_ROUTES.get(route.template)
        if limit is None or kind is None:
            return None, {}
        channel_id = params.get("channel_id")
        if channel_id is None:
            interaction = self._by_token.get(params.get("token", ""))
            channel_id = interaction.channel.id if interaction is not None else None
        if channel_id is None:
            return None, {}
        now = time.monotonic()
        bucket = self._buckets.get((kind, channel_id))
        if bucket is None or now >= bucket.started + limit.per:
            bucket = self._buckets[(kind, channel_id)] = _Bucket(now)
        reset_after = max(0.0, bucket.started + limit.per - now)
        headers = {
            "X-RateLimit-Limit": str(limit.count),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(f"{kind}:{route.template}".encode()).hexdigest()[:16],
        }
        if bucket.used >= limit.count:
            headers.update({
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Scope": "user",
                "Retry-After": str(max(1, math.ceil(reset_after))),
                "Via": "1.1 google",
            })
            body = {"message": "You are being rate limited.", "retry_after": round(reset_after, 3), "global": False}
            return Reply(429, body, headers), {}
        bucket.used += 1
        headers["X-RateLimit-Remaining"] = str(limit.count - bucket.used)
        return None, headers

    # ------------------------------------------------------------------ payload builders

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
                    "emoji": _emoji_json(emoji),
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

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, Callable[..., Awaitable[Reply]], bool]] = [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/applications/{app_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{app_id}/commands", self._put_commands, True),
            ("POST", "/applications/{app_id}/commands", self._post_command, True),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self._post_command, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback, False),
            ("POST", "/webhooks/{app_id}/{token}", self._webhook_execute, False),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_get_message, False),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_edit_message, False),
            ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_delete_message, False),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/channels/{channel_id}/messages", self._get_history, True),
            ("POST", "/channels/{channel_id}/messages", self._post_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
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
            ("GET", "/guilds/{guild_id}", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
        ]
        return [_Route(method, template, _route_regex(template), handler, auth) for method, template, handler, auth
                in table]

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method != method:
                continue
            match = route.regex.match(path)
            if match:
                return route, match.groupdict()
        return None, {}

    async def _parse(self, request: web.Request) -> ApiRequest:
        body: Any = None
        files: list[UploadedFile] = []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            position = 0
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: Discord has none
                    raise ApiError(400, 50035, "Invalid Form Body", kind="invalid_body")
                raw = bytes(await part.read(decode=False))
                if part.name == "payload_json":
                    body = json.loads(raw)
                elif part.filename is not None:
                    match = re.fullmatch(r"files\[(\d+)\]", part.name or "")
                    index = int(match.group(1)) if match else position
                    content_type = part.headers.get("Content-Type")
                    files.append(UploadedFile(index, part.name or "", part.filename, raw, content_type))
                    position += 1
        else:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, 50109, "The request body contains invalid JSON.", kind="invalid_body") from None
        authorization = request.headers.get("Authorization", "")
        return ApiRequest(
            method=request.method,
            path=request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path,
            query=dict(request.query),
            json=body,
            files=files,
            authorized=authorization.startswith("Bot ") and len(authorization) > 4,
        )

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle_api_request(request)
        except Exception:  # a bug in the fake: fail the test loudly, answer like a broken Discord
            self.record_error("fake_crash", traceback.format_exc(), method=request.method, path=request.path)
            return web.Response(status=500, body=b'{"message": "500: Internal Server Error", "code": 0}',
                                headers={"Content-Type": JSON_TYPE})

    async def _handle_api_request(self, request: web.Request) -> web.StreamResponse:
        at = self.now()
        method = request.method
        path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX + "/") else request.path
        route, params = self._match(method, path) if request.path.startswith(API_PREFIX + "/") else (None, {})
        try:
            api_request = await self._parse(request)
        except ApiError as exc:
            self.record_error(exc.kind or "invalid_body", exc.message, method=method, path=path)
            call = RecordedCall(at, method, path, route.template if route else None, dict(request.query), None, [])
            return self._finish(call, Reply(exc.status, exc.body()))
        call = RecordedCall(
            at=at,
            method=method,
            path=path,
            route=route.template if route else None,
            query=api_request.query,
            json=api_request.json,
            files=[(upload.filename, upload.data) for upload in api_request.files],
            authorized=api_request.authorized,
        )
        if route is None:
            self.record_error("unknown_route", "no such route in the fake Discord", method=method, path=path)
            return self._finish(call, Reply(404, {"message": "404: Not Found", "code": 0}))
        if self.openapi is not None:
            multipart = request.content_type.startswith("multipart/")
            for problem in self.openapi.problems(method, path, api_request.json, multipart=multipart):
                self.record_error("openapi", problem, method=method, path=path)
        fault = self._take_fault(method, path, uploads=bool(api_request.files))
        if fault is not None:
            call.fault = True
            fault.hits.append(call)
            return self._finish(call, fault.reply())
        if route.auth and not api_request.authorized:
            self.record_error("unauthorized", "no 'Authorization: Bot <token>' header", method=method, path=path)
            return self._finish(call, Reply(401, {"message": "401: Unauthorized", "code": 0}))
        limited, limit_headers = self._rate_limit(route, params)
        if limited is not None:
            call.rate_limited = True
            self.rate_limited.append(call)
            return self._finish(call, limited)
        try:
            reply = await route.handler(api_request, **params)
        except ApiError as exc:
            if exc.kind is not None:
                detail = "; ".join(flatten_errors(exc.errors)) if exc.errors else ""
                self.record_error(exc.kind, f"{exc.code} {exc.message} {detail}".strip(), method=method, path=path)
            reply = Reply(exc.status, exc.body())
        except Exception:
            self.record_error("fake_crash", traceback.format_exc(), method=method, path=path)
            reply = Reply(500, {"message": "500: Internal Server Error", "code": 0})
        reply.headers = {**limit_headers, **reply.headers}
        return self._finish(call, reply)

    def _finish(self, call: RecordedCall, reply: Reply) -> web.Response:
        call.status = reply.status
        call.response = reply.body
        self.calls.append(call)
        self.changed()
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        headers = {"Content-Type": JSON_TYPE, **reply.headers}
        return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        self.cdn_requests.append(request.path)
        attachment = self._attachments.get(request.match_info["attachment_id"])
        if attachment is None:
            return web.Response(status=404, text="Not Found")
        content_type = attachment.to_json().get("content_type", "application/octet-stream")
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})

    # ------------------------------------------------------------------ lookups for handlers

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

    # ------------------------------------------------------------------ messages

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

    # ------------------------------------------------------------------ REST: users, app, gateway, guilds

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

    def _guild(self, guild_id: str) -> FakeGuild:
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

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

    # ------------------------------------------------------------------ REST: application commands

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

    # ------------------------------------------------------------------ REST: interactions and webhooks

    def _token_expired(self, interaction: Interaction) -> bool:
        return interaction.expired or self.now() - interaction.created_at > self.token_lifetime

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
                flags &= FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2
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
            flags &= FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2
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

    # ------------------------------------------------------------------ REST: channels and messages

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
        flags &= FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2
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

    # ------------------------------------------------------------------ REST: reactions

    def _check_emoji(self, emoji: str) -> None:
        if _CUSTOM_EMOJI_RE.match(emoji):
            raise ApiError(400, 10014, "Unknown Emoji")  # the fake's guild has no custom emojis
        if emoji.isascii():  # ":thumbsup:", "thumbsup", "+1": not an emoji
            raise ApiError(400, 10014, "Unknown Emoji", kind="invalid_body")

    def _reaction_event(self, message: StoredMessage, user: FakeUser, emoji: str, *, add: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": user.id,
            "channel_id": message.channel_id,
            "message_id": message.id,
            "emoji": _emoji_json(emoji),
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

    async def _reaction_added(self, message: StoredMessage, user: FakeUser, emoji: str) -> None:
        users = message.reactions.setdefault(_emoji_key(emoji), [])
        if user.id in users:
            return
        users.append(user.id)
        self.changed()
        intent = INTENT_GUILD_MESSAGE_REACTIONS if message.guild_id else INTENT_DIRECT_MESSAGE_REACTIONS
        await self.gateway.dispatch("MESSAGE_REACTION_ADD", self._reaction_event(message, user, emoji, add=True),
                                    intent=intent)

    async def _reaction_removed(self, message: StoredMessage, user: FakeUser, emoji: str) -> None:
        users = message.reactions.get(_emoji_key(emoji), [])
        if user.id not in users:
            return
        users.remove(user.id)
        if not users:
            message.reactions.pop(_emoji_key(emoji), None)
        self.changed()
        intent = INTENT_GUILD_MESSAGE_REACTIONS if message.guild_id else INTENT_DIRECT_MESSAGE_REACTIONS
        await self.gateway.dispatch("MESSAGE_REACTION_REMOVE",
                                    self._reaction_event(message, user, emoji, add=False), intent=intent)

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
        users = message.reactions.get(_emoji_key(emoji), [])
        return Reply(200, [self.world.users[user_id].to_json() for user_id in users])

    async def _clear_emoji(self, request: ApiRequest, channel_id: str, message_id: str, emoji: str) -> Reply:
        channel = self._channel(channel_id)
        message = self._channel_message(channel_id, message_id)
        self._require(channel, MANAGE_MESSAGES)
        if message.reactions.pop(_emoji_key(emoji), None):
            self.changed()
            data = {"channel_id": channel_id, "message_id": message_id, "emoji": _emoji_json(emoji)}
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

    def _check_available(self, command: dict[str, Any], user: FakeUser, channel: FakeChannel,
                         guild: FakeGuild | None) -> None:
        name = command["name"]
        if guild is None:
            contexts = command.get("contexts")
            if command.get("dm_permission") is False or (contexts is not None and 1 not in contexts):
                raise CommandUnavailable(f"/{name} is not available in DMs")
            return
        contexts = command.get("contexts")
        if contexts is not None and 0 not in contexts:
            raise CommandUnavailable(f"/{name} is not available in guilds")
        required = command.get("default_member_permissions")
        if required is not None:
            have = guild.permissions_for(user.id, channel)
            if int(required) & have != int(required):
                raise CommandUnavailable(f"{user.username} lacks the permissions /{name} needs ({required})")
        if command.get("nsfw") and not channel.nsfw:
            raise CommandUnavailable(f"/{name} is age-restricted and #{channel.name} is not nsfw")

    def _option_value(
        self, option: dict[str, Any], value: Any, resolved: dict[str, dict[str, Any]], channel: FakeChannel,
        guild: FakeGuild | None
    ) -> Any:
        kind, name = option["type"], option["name"]
        if kind == OPT_STRING:
            if not isinstance(value, str):
                raise ValueError(f"option {name!r} takes a string, not {value!r}")
            if not option.get("min_length", 0) <= len(value) <= option.get("max_length", 6000):
                raise ValueError(f"option {name!r}: length {len(value)} is out of range")
        elif kind in (OPT_INTEGER, OPT_NUMBER):
            if isinstance(value, bool) or not isinstance(value, int if kind == OPT_INTEGER else (int, float)):
                raise ValueError(f"option {name!r} takes a number, not {value!r}")
            if "min_value" in option and value < option["min_value"]:
                raise ValueError(f"option {name!r}: {value} < {option['min_value']}")
            if "max_value" in option and value > option["max_value"]:
                raise ValueError(f"option {name!r}: {value} > {option['max_value']}")
        elif kind == OPT_BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"option {name!r} takes a bool, not {value!r}")
        elif kind in (OPT_USER, OPT_MENTIONABLE) and isinstance(value, FakeUser):
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
        else:
            raise ValueError(f"option {name!r} (type {kind}) cannot take {value!r}")
        choices = option.get("choices")
        if choices and value not in [choice["value"] for choice in choices]:
            raise ValueError(f"option {name!r}: {value!r} is not one of the choices {choices}")
        return value

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
            self._check_available(command, user, channel, guild)
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
