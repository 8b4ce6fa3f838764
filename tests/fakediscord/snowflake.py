"""Discord snowflakes: time-based ids, as strings, like the real API sends them.

discord.py derives ``created_at`` from ids, so they must encode the current time:
``(ms_since_discord_epoch << 22) | worker | increment``.
"""

from __future__ import annotations

import datetime
import time

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeFactory:
    """Hands out strictly increasing snowflakes that encode the wall-clock time."""

    def __init__(self, worker: int = 1) -> None:
        self._worker = worker & 0x1F
        self._last = 0

    def next(self) -> str:
        """A new snowflake for "now", larger than every one handed out before."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (self._worker << 17)
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return str(value)


def snowflake_time(snowflake: str | int) -> datetime.datetime:
    """The UTC time a snowflake encodes."""
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def iso_timestamp(when: datetime.datetime | None = None) -> str:
    """An ISO 8601 timestamp as Discord writes them (``2024-01-01T00:00:00.000000+00:00``)."""
    when = when or datetime.datetime.now(tz=datetime.timezone.utc)
    return when.isoformat(timespec="microseconds")
