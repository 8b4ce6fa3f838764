"""Pacing per channel: the bot's edits and posts in one channel stay under Discord's limit for it."""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable

CHANNEL_EDITS_PER_WINDOW = 5  # Discord allows about 5 message edits per channel per 5 s
CHANNEL_WINDOW_S = 5.2
STATUS_RETRY_S = 0.5  # a status edit held back for a waiting result tries again after this long
RESULT_PACE_S = 30.0  # the longest a result waits for its channel's turn before it goes anyway


class ChannelPacer:
    """Keeps the bot's message edits and posts per channel under Discord's per-channel limit.

    Results take a turn (waiting for one, up to a bound), first made, first posted: a result waiting
    for its channel goes only when no result made before it still waits there. Status edits (queue
    position, progress) go only while no result waits and the channel has room, else they wait and
    the newest state goes later.
    """

    def __init__(
        self,
        count: int = CHANNEL_EDITS_PER_WINDOW,
        per: float = CHANNEL_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = count
        self.per = per
        self._clock = clock
        self._sent: dict[int, collections.deque[float]] = {}
        self._results_waiting: dict[int, list[tuple[float, int]]] = {}  # heaps of (made, arrival) per channel
        self._arrivals = itertools.count()
        self._moved: dict[int, asyncio.Event] = {}  # set when a result leaves a channel's line

    def delay(self, channel_id: int, *, reserve: int = 0) -> float:
        """Seconds until a call may go in ``channel_id`` leaving ``reserve`` slots free (0: now)."""
        now = self._clock()
        sent = self._sent.get(channel_id)
        if sent is None:
            return 0.0
        while sent and sent[0] <= now - self.per:
            sent.popleft()
        if not sent:
            del self._sent[channel_id]
            return 0.0
        allowed = max(1, self.count - reserve)
        if len(sent) < allowed:
            return 0.0
        return sent[len(sent) - allowed] + self.per - now

    def take(self, channel_id: int) -> None:
        self._sent.setdefault(channel_id, collections.deque()).append(self._clock())

    def status_gate(self, channel_id: int, *, crowded: bool = True) -> float:
        """For a status edit: 0 (and the slot is taken) when it may go now, else seconds to wait.

        While a result waits for its turn in the channel, status edits wait too: results come first.
        A job alone in its channel (``crowded`` False) is not held back: its own edits are already
        spaced by the progress interval.
        """
        if self._results_waiting.get(channel_id):
            return STATUS_RETRY_S
        wait = self.delay(channel_id) if crowded else 0.0
        if wait <= 0:
            self.take(channel_id)
        return wait

    async def turn(self, channel_id: int, *, timeout: float = RESULT_PACE_S, made: float | None = None) -> None:
        """Wait (at most ``timeout`` s) for a slot in ``channel_id``, then take it.

        ``made``: when the result was made (this clock; now by default). Results waiting in one channel
        take the slots in that order, whatever order their waits began or their timers fire in.
        """
        now = self._clock()
        deadline = now + timeout
        ticket = (now if made is None else made, next(self._arrivals))
        line = self._results_waiting.setdefault(channel_id, [])
        heapq.heappush(line, ticket)
        try:
            for _ in range(1000):
                left = deadline - self._clock()
                if left <= 0:
                    break
                if line[0] != ticket:  # a result made earlier waits here: it goes first
                    moved = self._moved.setdefault(channel_id, asyncio.Event())
                    try:
                        await asyncio.wait_for(moved.wait(), left)
                    except TimeoutError:
                        break
                    continue
                wait = self.delay(channel_id)
                if wait <= 0:
                    break
                await asyncio.sleep(min(wait, left) + 0.01)
        finally:
            line.remove(ticket)
            heapq.heapify(line)
            if not line:
                del self._results_waiting[channel_id]
            if channel_id in self._moved:
                self._moved.pop(channel_id).set()  # the others look again at who is first
        self.take(channel_id)
