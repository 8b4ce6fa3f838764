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

import json
import logging
import re
import traceback

from aiohttp import web

from .api import API_PREFIX, JSON_TYPE, ApiError, Reply, Route, RouteRow, parse_request
from .driver import Driver
from .faults import Fault
from .records import RecordedCall
from .routes.channels import ChannelRoutes
from .routes.commands import CommandRoutes
from .routes.interactions import InteractionRoutes
from .routes.reactions import ReactionRoutes
from .routes.users import UserRoutes
from .validation import flatten_errors

log = logging.getLogger(__name__)


class FakeDiscord(Driver, UserRoutes, CommandRoutes, InteractionRoutes, ChannelRoutes, ReactionRoutes):
    """The fake Discord: an aiohttp server on 127.0.0.1 (a free port), records, and an injection API.

    ``callback_deadline``: seconds within which an interaction must be acknowledged (Discord: 3); a later
    callback gets 404 10062 and an ``interaction_timeout`` error; None turns the check off.
    ``token_lifetime``: seconds an interaction token works for webhooks (Discord: 15 minutes).
    ``channel_rate_limit``: a :class:`RateLimit` on message creates and edits per channel (None: no limit);
    the calls it refused are in ``rate_limited``.
    ``openapi``: check every request against Discord's OpenAPI description (``../shared/discord-openapi.json``)
    when that file exists; what it finds is recorded as ``openapi`` errors.

    The rooms: :class:`~tests.fakediscord.state.FakeState` (what the fake knows, waiting, queries),
    :mod:`~tests.fakediscord.payloads` (Discord's JSON), :mod:`~tests.fakediscord.messages` (the message
    store), :mod:`~tests.fakediscord.routes` (REST by group), :mod:`~tests.fakediscord.driver` (what users do)
    and :mod:`~tests.fakediscord.faults` (injected failures, rate limits); this class serves them over HTTP.
    """

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on a free port of ``host``."""
        self._routes = self._build_routes()
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
        self.faults.add(fault)
        return fault

    def fail_next_upload(
        self, method: str, path_regex: str, status: int = 429, retry_after: float = 1.0, count: int = 1
    ) -> Fault:
        """Like :meth:`fail_next`, for requests that upload at least one file.

        A result's upload and the status edits before it share a route (``PATCH .../messages/@original``,
        ``POST /channels/{id}/messages``); this fails the upload alone and lets the status edits through.
        """
        return self.fail_next(method, path_regex, status, retry_after, count, uploads_only=True)

    def _rate_limit(self, route: Route, params: dict[str, str]) -> tuple[Reply | None, dict[str, str]]:
        """(a 429 to answer instead, or None; the rate-limit headers of a call that goes through)."""
        channel_id = params.get("channel_id")
        if channel_id is None:
            interaction = self._by_token.get(params.get("token", ""))
            channel_id = interaction.channel.id if interaction is not None else None
        return self.limiter.check(self.channel_rate_limit, route.template, channel_id)

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_routes(self) -> list[Route]:
        table: list[RouteRow] = [
            *self._user_routes(),
            *self._command_routes(),
            *self._interaction_routes(),
            *self._channel_routes(),
            *self._reaction_routes(),
        ]
        return [Route.from_row(row) for row in table]

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method != method:
                continue
            match = route.regex.match(path)
            if match:
                return route, match.groupdict()
        return None, {}

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
            api_request = await parse_request(request)
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
        fault = self.faults.take(method, path, uploads=bool(api_request.files))
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
