"""Which commands a user may run where, and the checks on a plain option value: as Discord's client does them."""

from __future__ import annotations

from typing import Any

from .entities import FakeChannel, FakeGuild, FakeUser
from .records import OPT_BOOLEAN, OPT_INTEGER, OPT_NUMBER, OPT_STRING

SCALAR_OPTIONS = (OPT_STRING, OPT_INTEGER, OPT_NUMBER, OPT_BOOLEAN)


class CommandUnavailable(Exception):
    """Real Discord would not let this user run this command here (not synced, no permission, DM, nsfw)."""


def check_available(command: dict[str, Any], user: FakeUser, channel: FakeChannel, guild: FakeGuild | None) -> None:
    """Raise :class:`CommandUnavailable` where Discord's client would not offer ``command`` to ``user`` here."""
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


def checked_scalar(option: dict[str, Any], value: Any) -> Any:
    """``value`` of a string, number or bool ``option``, checked as Discord's client checks it; ValueError if not."""
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
    elif not isinstance(value, bool):
        raise ValueError(f"option {name!r} takes a bool, not {value!r}")
    choices = option.get("choices")
    if choices and value not in [choice["value"] for choice in choices]:
        raise ValueError(f"option {name!r}: {value!r} is not one of the choices {choices}")
    return value
