"""Uploads are decoded one member at a time each, in a small pool of their own.

Decoding an upload is CPU work (a phone photo: a tenth of a second; a large PNG far more). In the
default thread pool (``asyncio.to_thread``) it would compete with what delivery runs there (encoding
results, the image store), so a flood of uploads would hold up everyone's results. Here a member has
at most one upload being downloaded and decoded at a time (:meth:`UploadGate.turn`), and decoding runs
in :data:`DECODE_WORKERS` threads that nothing else uses (:meth:`UploadGate.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from core.limits import Refusal

DECODE_WORKERS = 2
ONE_AT_A_TIME = "I'm still reading your last image; send the next one when that is done."

T = TypeVar("T")


class UploadGate:
    def __init__(self, workers: int = DECODE_WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload-decode")
        self._in_flight: set[int] = set()

    @contextlib.contextmanager
    def turn(self, user_id: int) -> Iterator[None]:
        """While inside, ``user_id`` has an upload in flight; a second one meanwhile is refused."""
        if user_id in self._in_flight:
            raise Refusal(ONE_AT_A_TIME)
        self._in_flight.add(user_id)
        try:
            yield
        finally:
            self._in_flight.discard(user_id)

    def busy(self, user_id: int) -> bool:
        return user_id in self._in_flight

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the decode pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
