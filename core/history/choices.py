"""What servers and members chose: guild settings and user preferences, and the checks on a change.

Frozen records with the defaults for anything never changed; :func:`checked_changes` turns the
keyword arguments of an update into checked values (ValueError for an unknown field or a bad
value, TypeError for a value of the wrong type) before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

IMAGE_SAFETY_MODES = ("off", "spoiler", "block")


@dataclass(frozen=True)
class GuildSettings:
    """Per-guild settings; a guild that never changed one gets these defaults."""

    guild_id: int
    image_channels: frozenset[int] = frozenset()
    max_waiting_per_user: int = 10  # a short queue per member, served fairly by the engine, before refusals
    max_jobs_per_minute: int = 12  # room to queue the whole allowance at once
    finals_outside_nsfw: bool = True
    blocked_words: tuple[str, ...] = ()
    image_safety: str = "off"  # the image safety check outside age-restricted channels: off, spoiler, block


@dataclass(frozen=True)
class GuildStyle:
    """One server's row for a style preset (``core.styles`` turns these and the bot's defaults into styles).

    ``hidden`` rows only say "the bot's default of this name is not offered here"; their texts are unused.
    """

    guild_id: int
    name: str
    prompt_suffix: str = ""
    negative_prompt: str = ""
    hidden: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.guild_id, bool) or not isinstance(self.guild_id, int):
            raise TypeError(f"A style's guild_id must be an int, not {self.guild_id!r}.")
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"A style's name must be a non-empty string, not {self.name!r}.")
        for name in ("prompt_suffix", "negative_prompt"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"A style's {name} must be a string, not {getattr(self, name)!r}.")
        _check_bool_setting("hidden", self.hidden)


@dataclass(frozen=True)
class UserPrefs:
    """Per-user preferences; ``None`` means "use the bot's default"."""

    user_id: int
    aspect: str | None = None
    negative_prompt: str | None = None
    style_suffix: str | None = None
    final_model: str | None = None
    dm_results: bool = False


def _check_count_setting(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}.")
    return value


def _check_bool_setting(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}.")
    return value


def _check_choice_setting(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _check_words(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"blocked_words must be a list of strings, not {type(value).__name__}.")
    words: list[str] = []
    for word in value:
        if not isinstance(word, str):
            raise TypeError(f"blocked_words must hold strings, not {word!r}.")
        word = word.strip()
        if word and word not in words:
            words.append(word)
    return tuple(words)


def _check_channels(value: Any) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"image_channels must be a set of channel ids, not {type(value).__name__}.")
    channels = set()
    for channel in value:
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise TypeError(f"image_channels must hold channel ids (int), not {channel!r}.")
        channels.add(channel)
    return frozenset(channels)


GUILD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "image_channels": _check_channels,
    "max_waiting_per_user": lambda v: _check_count_setting("max_waiting_per_user", v),
    "max_jobs_per_minute": lambda v: _check_count_setting("max_jobs_per_minute", v),
    "finals_outside_nsfw": lambda v: _check_bool_setting("finals_outside_nsfw", v),
    "blocked_words": _check_words,
    "image_safety": lambda v: _check_choice_setting("image_safety", v, IMAGE_SAFETY_MODES),
}


def _check_optional_text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, not {value!r}.")
    return value


PREF_CHECKS: dict[str, Callable[[Any], Any]] = {
    "aspect": lambda v: _check_optional_text("aspect", v),
    "negative_prompt": lambda v: _check_optional_text("negative_prompt", v),
    "style_suffix": lambda v: _check_optional_text("style_suffix", v),
    "final_model": lambda v: _check_optional_text("final_model", v),
    "dm_results": lambda v: _check_bool_setting("dm_results", v),
}


def checked_changes(
    what: str, checks: Mapping[str, Callable[[Any], Any]], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """``changes`` with every value checked; ValueError names unknown fields and the known ones."""
    unknown = sorted(set(changes) - set(checks))
    if unknown:
        raise ValueError(f"Unknown {what} field(s): {', '.join(unknown)}; known: {', '.join(sorted(checks))}.")
    return {name: checks[name](value) for name, value in changes.items()}
