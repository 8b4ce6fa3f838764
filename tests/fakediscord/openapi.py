"""Checks the bot's requests against Discord's published OpenAPI description, when it is at hand.

The description (``../shared/discord-openapi.json`` next to the repository, a data file for the tests:
never copied into the repository) lists every route, its methods and the JSON schema of each request
body. :class:`OpenApiCheck` answers, for one request, what Discord's own description says is wrong
with it: an unknown route or method, or a body that does not match the schema (fields Discord does
not know, wrong types). The fake records those as ``openapi`` errors, which fail the test.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OPENAPI_PATH = REPO_ROOT.parent / "shared" / "discord-openapi.json"
_METHODS = ("get", "put", "post", "patch", "delete")


@dataclass(frozen=True)
class _SpecRoute:
    template: str
    regex: re.Pattern[str]
    literal_segments: int
    operations: dict[str, Any]


def _route(template: str, item: dict[str, Any]) -> _SpecRoute:
    pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
    literal = sum(1 for part in template.split("/") if part and not part.startswith("{"))
    operations = {method.upper(): item[method] for method in _METHODS if method in item}
    return _SpecRoute(template, re.compile(pattern), literal, operations)


class OpenApiCheck:
    """Discord's OpenAPI description, loaded once, asked about one request at a time."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = _as_discord_reads_it(document)
        self.routes = [_route(template, item) for template, item in document.get("paths", {}).items()]
        self._validators: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> OpenApiCheck | None:
        """The check for the file at ``path`` (default: ``../shared/discord-openapi.json``); None without it."""
        path = Path(path) if path is not None else DEFAULT_OPENAPI_PATH
        if not path.is_file():
            return None
        try:
            return _cached(str(path))
        except (OSError, ValueError) as e:
            log.warning("cannot read Discord's OpenAPI description at %s: %s", path, e)
            return None

    def route(self, path: str) -> _SpecRoute | None:
        """The described route ``path`` (after ``/api/v10``) falls under; the most literal one wins."""
        matches = [route for route in self.routes if route.regex.match(path)]
        return max(matches, key=lambda r: r.literal_segments) if matches else None

    def problems(self, method: str, path: str, body: Any, *, multipart: bool) -> list[str]:
        """What the description says is wrong with this request (an empty list when nothing is)."""
        route = self.route(path)
        if route is None:
            return [f"{method} {path}: no such route in Discord's API description"]
        operation = route.operations.get(method)
        if operation is None:
            return [f"{method} {route.template}: Discord's API description has no {method} for this route"]
        if body is None:
            return []
        schema = self._body_schema(operation, multipart=multipart)
        if schema is None:
            return []
        validator = self._validator(schema)
        problems = []
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))[:5]:
            where = "/".join(str(part) for part in error.absolute_path) or "(body)"
            problems.append(f"{method} {route.template}: {where}: {error.message[:200]}")
        return problems

    @staticmethod
    def _body_schema(operation: dict[str, Any], *, multipart: bool) -> dict[str, Any] | None:
        content = (operation.get("requestBody") or {}).get("content") or {}
        if multipart and "multipart/form-data" in content:
            schema = content["multipart/form-data"].get("schema") or {}
            # payload_json carries the JSON part: the first member of the allOf (files are separate parts).
            parts = schema.get("allOf")
            return parts[0] if parts else schema
        entry = content.get("application/json")
        return entry.get("schema") if entry else None

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = self._make_validator(schema)
        return validator

    def _make_validator(self, schema: dict[str, Any]) -> Any:
        import jsonschema

        root = {"components": self.document.get("components", {}), **schema}
        return jsonschema.Draft202012Validator(root)

    @cached_property
    def templates(self) -> list[str]:
        return [route.template for route in self.routes]


def _as_discord_reads_it(document: dict[str, Any]) -> dict[str, Any]:
    """The description with snowflakes as Discord accepts them: a decimal string or a non-negative integer.

    The description types snowflakes as strings only, but Discord takes integers as well (discord.py
    sends attachment ids ``0, 1, ...`` as integers), so a strict reading would flag every upload.
    """
    components = dict(document.get("components", {}))
    schemas = dict(components.get("schemas", {}))
    snowflake = schemas.get("SnowflakeType")
    if snowflake is not None:
        schemas["SnowflakeType"] = {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}
    components["schemas"] = schemas
    return {**document, "components": components}


_loaded: dict[str, OpenApiCheck] = {}


def _cached(path: str) -> OpenApiCheck:
    check = _loaded.get(path)
    if check is None:
        with open(path, encoding="utf-8") as file:
            check = _loaded[path] = OpenApiCheck(json.load(file))
    return check
