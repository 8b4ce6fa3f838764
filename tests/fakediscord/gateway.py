"""The fake gateway: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay, dispatch.

One bot session at a time (a new IDENTIFY replaces the old session). Events dispatched while the socket
is down are kept with their sequence numbers and replayed on RESUME, as Discord does. Frames are plain
JSON text: the client asks for ``compress=zlib-stream`` but only inflates binary frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger(__name__)

# Opcodes.
DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15

HEARTBEAT_INTERVAL_MS = 41250


@dataclass(eq=False)
class GatewayConnection:
    """One websocket connection: how it started (``identify`` / ``resume``) and how it ended."""

    path: str
    query: dict[str, str]
    opened_at: float
    request: web.Request = field(repr=False)
    ws: web.WebSocketResponse = field(repr=False)
    kind: str | None = None
    closed_at: float | None = None
    close_code: int | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


@dataclass(eq=False)
class GatewaySession:
    """A gateway session: its id, the IDENTIFY it came from and every event sent in it."""

    session_id: str
    identify: dict[str, Any]
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: GatewayConnection | None = None
    resumable: bool = True

    @property
    def intents(self) -> int:
        """The intents the client asked for."""
        return int(self.identify.get("intents") or 0)


@dataclass(frozen=True)
class ResumeRecord:
    """A RESUME the client sent: from which sequence, how many events were replayed, whether it worked."""

    session_id: str
    seq: int | None
    replayed: int
    ok: bool


class Gateway:
    """The websocket side of the fake; :class:`FakeDiscord` owns one."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self.session: GatewaySession | None = None
        self.connections: list[GatewayConnection] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[ResumeRecord] = []
        self.skipped_events: list[tuple[str, dict[str, Any]]] = []
        self.received: list[dict[str, Any]] = []
        self._closing: set[asyncio.Future[bool]] = set()

    @property
    def connected(self) -> bool:
        """Whether a session is live on an open socket."""
        session = self.session
        return session is not None and session.connection is not None and not session.connection.ws.closed

    @property
    def intents(self) -> int:
        """The current session's intents (0 without a session)."""
        return self.session.intents if self.session is not None else 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The websocket endpoint (``/gateway`` and the resume URL)."""
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        connection = GatewayConnection(
            path=request.path,
            query=dict(request.query),
            opened_at=self._fake.now(),
            request=request,
            ws=ws,
        )
        self.connections.append(connection)
        self._fake.changed()
        await self._send(connection, {"op": HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._on_frame(connection, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._fake.record_error("gateway_protocol", "binary frame from the client")
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            connection.closed_at = self._fake.now()
            connection.close_code = ws.close_code
            if self.session is not None and self.session.connection is connection:
                self.session.connection = None
            self._fake.changed()
        return ws

    async def _on_frame(self, connection: GatewayConnection, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame["op"]
        except (ValueError, KeyError, TypeError):
            self._fake.record_error("gateway_protocol", f"not a gateway frame: {text[:200]!r}")
            return
        self.received.append(frame)
        data = frame.get("d")
        if op == HEARTBEAT:
            await self._send(connection, {"op": HEARTBEAT_ACK, "d": None})
        elif op == IDENTIFY:
            await self._identify(connection, data or {})
        elif op == RESUME:
            await self._resume(connection, data or {})
        elif op == REQUEST_GUILD_MEMBERS:
            await self._request_members(data or {})
        elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            pass
        else:
            self._fake.record_error("gateway_protocol", f"unexpected gateway op {op}: {text[:200]!r}")
        self._fake.changed()

    async def _identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        if not data.get("token"):
            await connection.ws.close(code=4004, message=b"Authentication failed.")
            return
        old = self.session
        if old is not None and old.connection is not None and old.connection is not connection:
            await old.connection.ws.close(code=4000)
        connection.kind = "identify"
        self.identifies.append(data)
        session = GatewaySession(session_id=secrets.token_hex(16), identify=data, connection=connection)
        self.session = session
        world = self._fake.world
        ready = {
            "v": 10,
            "user": self._fake.bot_user_json(),
            "guilds": [{"id": guild_id, "unavailable": True} for guild_id in world.guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self._fake.resume_gateway_url,
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "application": {"id": self._fake.application_id, "flags": 0},
            "_trace": ["fakediscord"],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._dispatch_in(session, "READY", ready)
        all_members = bool(session.intents & INTENT_GUILD_MEMBERS)
        for guild in world.guilds.values():
            payload = guild.to_create_json(all_members=all_members, bot_id=world.bot.id)
            await self._dispatch_in(session, "GUILD_CREATE", payload)

    async def _resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = self.session
        session_id = str(data.get("session_id"))
        seq = data.get("seq")
        if session is None or session.session_id != session_id or not session.resumable:
            self.resumes.append(ResumeRecord(session_id, seq, 0, False))
            await self._send(connection, {"op": INVALID_SESSION, "d": False})
            return
        connection.kind = "resume"
        if session.connection is not None and session.connection is not connection:
            await session.connection.ws.close(code=4000)
        session.connection = connection
        missed = [event for event in session.events if seq is None or event["s"] > seq]
        async with connection.send_lock:
            for event in missed:
                await connection.ws.send_str(json.dumps(event))
        self.resumes.append(ResumeRecord(session_id, seq, len(missed), True))
        await self._dispatch_in(session, "RESUMED", {"_trace": ["fakediscord"]})

    async def _request_members(self, data: dict[str, Any]) -> None:
        guild = self._fake.world.guilds.get(str(data.get("guild_id")))
        if guild is None or self.session is None:
            return
        members = list(guild.members.values())
        user_ids = data.get("user_ids")
        if user_ids:
            wanted = {str(user_id) for user_id in user_ids}
            members = [member for member in members if member.user.id in wanted]
        query = data.get("query")
        if query:
            members = [member for member in members if member.user.username.startswith(query)]
        chunk: dict[str, Any] = {
            "guild_id": guild.id,
            "members": [member.to_json() for member in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self._dispatch_in(self.session, "GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> bool:
        """Send an event in the current session (kept for replay when the socket is down).

        Returns False, sending nothing, when there is no session or the session lacks ``intent``.
        """
        session = self.session
        if session is None:
            self.skipped_events.append((event, data))
            return False
        if intent is not None and not session.intents & intent:
            self.skipped_events.append((event, data))
            return False
        await self._dispatch_in(session, event, data)
        return True

    async def _dispatch_in(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(frame)
        connection = session.connection
        if connection is not None and not connection.ws.closed:
            await self._send(connection, frame)
        self._fake.changed()

    async def _send(self, connection: GatewayConnection, frame: dict[str, Any]) -> None:
        async with connection.send_lock:
            if connection.ws.closed:
                return
            try:
                await connection.ws.send_str(json.dumps(frame))
            except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-send
                log.debug("gateway send failed: %s", exc)

    def drop(self, *, code: int | None = 4000, resumable: bool = True) -> None:
        """Close the live socket: with ``code`` (4000 = unknown error, resumable), or abort TCP when None.

        With ``resumable=False`` the client's RESUME gets INVALID_SESSION and it must IDENTIFY again.
        """
        session = self.session
        if session is None or session.connection is None:
            raise RuntimeError("no live gateway connection to drop")
        connection = session.connection
        session.connection = None
        session.resumable = resumable
        if code is None:
            transport = connection.request.transport
            if transport is not None:
                transport.abort()
        else:
            # Not awaited here: the caller's next injection must land before the client can reconnect,
            # so that it is replayed on RESUME (deterministically, not by a race).
            closing = asyncio.ensure_future(connection.ws.close(code=code))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._fake.changed()

    async def close_all(self) -> None:
        """Close every open socket (server shutdown)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for connection in self.connections:
            if not connection.ws.closed:
                await connection.ws.close(code=1001)
