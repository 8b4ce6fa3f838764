"""Per-user throttles for what a member can make the bot do in public or by DM.

A member can make the bot speak in a channel (refusals to reactions and to messages in image
channels, which cannot be ephemeral) and send DMs (✉️ copies). Each of those goes through a
:class:`UserThrottle`: at most ``count`` events per ``per`` seconds for one user; what is over
is dropped and logged by the caller. Memory stays bounded: users whose window has passed are forgotten.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class UserThrottle:
    """A sliding window per user: ``allow(user)`` is True for at most ``count`` calls in ``per`` seconds."""

    def __init__(self, count: int, per: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if count < 1 or per <= 0:
            raise ValueError(f"a throttle needs count >= 1 and per > 0, not {count} and {per}")
        self.count = count
        self.per = per
        self._clock = clock
        self._events: dict[int, deque[float]] = {}
        self._next_sweep = 0.0

    def allow(self, user_id: int) -> bool:
        """Whether ``user_id`` may have one more now; counts it when so."""
        now = self._clock()
        self._sweep(now)
        events = self._events.setdefault(user_id, deque())
        while events and events[0] <= now - self.per:
            events.popleft()
        if len(events) >= self.count:
            return False
        events.append(now)
        return True

    def __len__(self) -> int:
        """How many users are remembered."""
        return len(self._events)

    def _sweep(self, now: float) -> None:
        """Forget users with nothing left in their window (at most once per window)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.per
        for user_id in [u for u, events in self._events.items() if not events or events[-1] <= now - self.per]:
            del self._events[user_id]
