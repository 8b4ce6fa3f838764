"""The status updater: one job's message shows its newest state (queue position, progress, preview)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import discord

log = logging.getLogger(__name__)


class StatusUpdater:
    """Edits one message with the newest state, at most once per ``interval``; older states are skipped.

    A live preview (a small PNG of a final's latents) rides along with the next edit, when ``screen``
    (if given) lets it: a preview it refuses is left out, the text is shown all the same. ``edit``
    returning False (``Delivery.show``: an earlier edit is still in flight past its bound) means
    "not shown": the state is kept and tried again after the interval, unless a newer one came.
    """

    def __init__(
        self,
        edit: Callable[..., Awaitable[bool | None]],
        *,
        interval: float,
        name: str = "status",
        gate: Callable[[], float] | None = None,
        screen: Callable[[bytes], Awaitable[bool]] | None = None,
    ) -> None:
        self._edit = edit
        self._screen = screen  # e.g. the image safety check: False leaves a preview out of the edit
        self._gate = gate  # e.g. ChannelPacer.status_gate: 0 to edit now, else seconds until the channel has room
        self._interval = interval
        self._pending: str | None = None
        self._preview: bytes | None = None
        self._last: str | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._closing = asyncio.Event()
        self._editing = False
        self.progressed = False  # whether a progress state (step i/n) was ever set
        self._task = asyncio.create_task(self._run(), name=name)

    def set(self, text: str, progress: bool = False, preview: bytes | None = None) -> None:
        if self._closed:
            return
        self.progressed = self.progressed or progress
        self._pending = text
        if preview is not None:
            self._preview = preview  # the newest preview waits for the next edit, even one without
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            text, self._pending = self._pending, None
            preview, self._preview = self._preview, None
            if text is None or (text == self._last and preview is None):
                continue
            if preview is not None and self._screen is not None and not await self._screen(preview):
                preview = None
                if text == self._last:
                    continue
                if self._closed:
                    return
            wait = self._gate() if self._gate is not None else 0.0
            if wait > 0:  # the channel is busy: keep the newest state for later (coalesced)
                if self._pending is None:
                    self._pending = text
                if self._preview is None:
                    self._preview = preview
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
                self._wake.set()
                continue
            self._editing = True
            try:
                if preview is None:
                    shown = await self._edit(text)
                else:
                    shown = await self._edit(text, preview=preview)
                if shown is False:  # kept for the next try, unless a newer state came meanwhile
                    if self._pending is None:
                        self._pending = text
                    if self._preview is None:
                        self._preview = preview
                    self._wake.set()
                else:
                    self._last = text
                    failures = 0
            except discord.HTTPException as e:
                failures += 1
                log.info("status edit failed (%s); %d in a row", e, failures)
                if failures >= 3 or isinstance(e, discord.NotFound | discord.Forbidden):
                    return  # the message is gone or not ours to edit: the result is posted anyway
            finally:
                self._editing = False
            if self._closed:
                return
            # The pause between edits ends early on close: nothing waits on it then.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._interval)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop; an edit in flight may finish first (so it cannot land after the result).

        An edit in flight is never cancelled, even past ``timeout``: discord.py holds the
        interaction's webhook lock while it sleeps on a 429, and a cancelled edit can leave that
        lock held, so the result's own edit would wait on it forever. Past ``timeout`` the edit is
        left to finish on its own (its task ends right after it) and close returns.
        """
        self._closed = True
        self._wake.set()
        self._closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if self._editing:
                log.info("a status edit is still in flight after %.1f s; left to finish on its own", timeout)
                self._task.add_done_callback(_log_failure)
                return
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        except Exception:  # the loop itself failed: it only logs, never raises
            log.exception("status updater failed")


def _log_failure(task: asyncio.Task) -> None:
    """Retrieve a detached task's outcome so a failure is logged, not reported as never retrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("status updater ended with %r", task.exception())
