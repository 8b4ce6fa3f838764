"""The limits real Discord enforces on messages, so that the fake rejects what Discord would.

``validate_message`` returns Discord's nested ``errors`` object (empty when the message is fine); the
server answers a non-empty one with 400 ``{"code": 50035, "message": "Invalid Form Body", "errors": ...}``.
"""

from __future__ import annotations

from typing import Any

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_ATTACHMENTS = 10
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_SELECT_OPTIONS = 25

ACTION_ROW = 1
BUTTON = 2
STRING_SELECT = 3
TEXT_INPUT = 4
SELECT_TYPES = (3, 5, 6, 7, 8)
LINK_STYLE = 5
PREMIUM_STYLE = 6


def _error(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _too_long(limit: int) -> dict[str, Any]:
    return _error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _embed_errors(embed: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Errors of one embed, and the characters it counts towards the 6000 total."""
    errors: dict[str, Any] = {}
    total = 0
    limits = {"title": 256, "description": 4096}
    for key, limit in limits.items():
        text = embed.get(key) or ""
        total += len(text)
        if len(text) > limit:
            errors[key] = _too_long(limit)
    footer = embed.get("footer") or {}
    total += len(footer.get("text") or "")
    if len(footer.get("text") or "") > 2048:
        errors["footer"] = {"text": _too_long(2048)}
    author = embed.get("author") or {}
    total += len(author.get("name") or "")
    if len(author.get("name") or "") > 256:
        errors["author"] = {"name": _too_long(256)}
    fields = embed.get("fields") or []
    if len(fields) > 25:
        errors["fields"] = _too_long(25)
    field_errors: dict[str, Any] = {}
    for index, embed_field in enumerate(fields):
        name, value = embed_field.get("name") or "", embed_field.get("value") or ""
        total += len(name) + len(value)
        problems: dict[str, Any] = {}
        if not name:
            problems["name"] = _error("BASE_TYPE_REQUIRED", "This field is required")
        elif len(name) > 256:
            problems["name"] = _too_long(256)
        if not value:
            problems["value"] = _error("BASE_TYPE_REQUIRED", "This field is required")
        elif len(value) > 1024:
            problems["value"] = _too_long(1024)
        if problems:
            field_errors[str(index)] = problems
    if field_errors:
        errors["fields"] = field_errors
    for key in ("image", "thumbnail"):
        url = (embed.get(key) or {}).get("url")
        if url is not None and not str(url).startswith(("http://", "https://", "attachment://")):
            errors[key] = {"url": _error("URL_TYPE_INVALID_URL", "Not a well formed URL.")}
    return errors, total


def _component_errors(component: dict[str, Any], seen_ids: set[str], *, top_level: bool, v2: bool) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    kind = component.get("type")
    custom_id = component.get("custom_id")
    if custom_id is not None:
        if len(str(custom_id)) > MAX_CUSTOM_ID:
            errors["custom_id"] = _too_long(MAX_CUSTOM_ID)
        elif custom_id in seen_ids:
            errors["custom_id"] = _error("COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
        seen_ids.add(str(custom_id))
    if not v2 and top_level and kind != ACTION_ROW:
        errors["type"] = _error("UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1,).")
    if kind == ACTION_ROW:
        children = component.get("components") or []
        buttons = [child for child in children if child.get("type") == BUTTON]
        selects = [child for child in children if child.get("type") in SELECT_TYPES]
        if not children or len(buttons) > MAX_ROW_BUTTONS or (selects and len(children) > 1):
            errors["components"] = _error(
                "BASE_TYPE_BAD_LENGTH", "An action row holds 1 to 5 buttons, or one select menu."
            )
    elif kind == BUTTON:
        style = component.get("style")
        label = component.get("label") or ""
        if len(label) > MAX_BUTTON_LABEL:
            errors["label"] = _too_long(MAX_BUTTON_LABEL)
        if style == LINK_STYLE:
            if not component.get("url") or custom_id is not None:
                errors["url"] = _error("BUTTON_COMPONENT_URL_REQUIRED", "A link button has a url and no custom_id.")
        elif style != PREMIUM_STYLE and not custom_id:
            errors["custom_id"] = _error("BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A button needs a custom_id.")
        if style != PREMIUM_STYLE and not label and not component.get("emoji"):
            errors["label"] = _error("BUTTON_COMPONENT_LABEL_REQUIRED", "A button needs a label or an emoji.")
    elif kind in SELECT_TYPES:
        if not custom_id:
            errors["custom_id"] = _error("BASE_TYPE_REQUIRED", "This field is required")
        if kind == STRING_SELECT:
            options = component.get("options") or []
            if not 1 <= len(options) <= MAX_SELECT_OPTIONS:
                errors["options"] = _error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length.")
    children_errors: dict[str, Any] = {}
    for index, child in enumerate(component.get("components") or []):
        child_errors = _component_errors(child, seen_ids, top_level=False, v2=v2)
        if child_errors:
            children_errors[str(index)] = child_errors
    if children_errors and "components" not in errors:
        errors["components"] = children_errors
    return errors


def validate_message(
    *,
    content: str,
    embeds: list[dict[str, Any]],
    components: list[dict[str, Any]],
    attachment_count: int,
    flags: int,
) -> dict[str, Any]:
    """Discord's ``errors`` object for a message state (empty when Discord would accept it)."""
    errors: dict[str, Any] = {}
    v2 = bool(flags & (1 << 15))
    if len(content) > MAX_CONTENT:
        errors["content"] = _too_long(MAX_CONTENT)
    if v2 and (content or embeds):
        errors["content"] = _error(
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
        )
    if len(embeds) > MAX_EMBEDS:
        errors["embeds"] = _too_long(MAX_EMBEDS)
    else:
        embed_errors: dict[str, Any] = {}
        total = 0
        for index, embed in enumerate(embeds):
            problems, count = _embed_errors(embed)
            total += count
            if problems:
                embed_errors[str(index)] = problems
        if total > MAX_EMBED_TOTAL:
            embed_errors["_errors"] = [
                {"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}
            ]
        if embed_errors:
            errors["embeds"] = embed_errors
    if not v2 and len(components) > MAX_ACTION_ROWS:
        errors["components"] = _too_long(MAX_ACTION_ROWS)
    else:
        seen_ids: set[str] = set()
        component_errors: dict[str, Any] = {}
        for index, component in enumerate(components):
            problems = _component_errors(component, seen_ids, top_level=True, v2=v2)
            if problems:
                component_errors[str(index)] = problems
        if component_errors:
            errors["components"] = component_errors
    if attachment_count > MAX_ATTACHMENTS:
        errors["attachments"] = _too_long(MAX_ATTACHMENTS)
    return errors


def flatten_errors(errors: dict[str, Any], prefix: str = "") -> list[str]:
    """``errors`` as readable lines (``embeds.0.title: Must be 256 or fewer in length.``)."""
    lines: list[str] = []
    for key, value in errors.items():
        if key == "_errors":
            lines.extend(f"{prefix or '<message>'}: {item['message']}" for item in value)
        elif isinstance(value, dict):
            lines.extend(flatten_errors(value, f"{prefix}.{key}" if prefix else key))
    return lines
