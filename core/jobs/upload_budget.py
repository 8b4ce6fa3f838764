"""How many bytes of images each member may add to the image store in an hour (``UPLOAD_MB_PER_HOUR``).

The store is shared: one member sending a photo and a reference twelve times a minute would otherwise
fill it, and the prune that makes room removes everyone else's kept images first. Counted are the bytes
actually written for the member's requests (an image already stored costs nothing), in this process
(a restart forgets them). Checked before the download (:meth:`UploadBudget.check` with no size) and
before each write.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable

from core.limits import Refusal

WINDOW_S = 3600.0


class UploadBudget:
    def __init__(self, mb_per_hour: Callable[[], int], clock: Callable[[], float]) -> None:
        self._mb_per_hour = mb_per_hour  # read each time: the settings can be swapped (tests, reload)
        self._clock = clock
        self._spent: defaultdict[int, deque[tuple[float, int]]] = defaultdict(deque)  # (when, bytes written)

    def _recent(self, user_id: int, now: float) -> deque[tuple[float, int]]:
        spent = self._spent[user_id]
        while spent and spent[0][0] <= now - WINDOW_S:
            spent.popleft()
        if not spent:
            del self._spent[user_id]
        return spent

    def check(self, user_id: int, size: int = 0) -> None:
        """Refuse when ``size`` more bytes (0: any at all) would pass the member's budget for the last hour."""
        mb = self._mb_per_hour()
        if mb <= 0:
            return
        budget, now = mb * 2**20, self._clock()
        spent = self._recent(user_id, now)
        total = sum(n for _, n in spent)
        if total + max(size, 1) <= budget:
            return
        # When do enough of the oldest writes leave the hour for this one to fit?
        wait = WINDOW_S
        for when, n in spent:
            total -= n
            if total + max(size, 1) <= budget:
                wait = when + WINDOW_S - now
                break
        minutes = max(1, math.ceil(wait / 60))
        raise Refusal(
            f"You have stored {math.ceil(sum(n for _, n in spent) / 2**20)} MB of images in the last hour; "
            f"the limit is {mb} MB an hour. You can upload again in {minutes} minute{'s' if minutes != 1 else ''}."
        )

    def spend(self, user_id: int, written: int) -> None:
        if written > 0:
            self._spent[user_id].append((self._clock(), written))
