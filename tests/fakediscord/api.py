"""The fake's HTTP plumbing: a parsed request, a reply, Discord's error answers, the route table rows."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from .records import UploadedFile

API_PREFIX = "/api/v10"
JSON_TYPE = "application/json"


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


# One row of a route table: (method, template such as ``/channels/{channel_id}``, handler, needs a bot token).
RouteRow = tuple[str, str, Callable[..., Awaitable[Reply]], bool]


@dataclass(frozen=True)
class Route:
    """A REST route: the handler gets the template's fields as keyword arguments."""

    method: str
    template: str
    regex: re.Pattern[str]
    handler: Callable[..., Awaitable[Reply]]
    auth: bool

    @classmethod
    def from_row(cls, row: RouteRow) -> Route:
        """The route of one table row (its template compiled to an anchored regex)."""
        method, template, handler, auth = row
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
        return cls(method, template, regex, handler, auth)


async def parse_request(request: web.Request) -> ApiRequest:
    """The JSON body (``payload_json`` of a multipart body) and the uploaded files of ``request``."""
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
