"""StatusUpdater: the newest state of a job in its message, never an edit cancelled half-way."""

from __future__ import annotations

import asyncio
import time

from core.status import StatusUpdater


async def test_closing_the_status_updater_never_cancels_an_edit_in_flight():
    """An edit sleeping on a 429 holds discord.py's webhook lock; cancelling it could leave the lock held."""
    started, release = asyncio.Event(), asyncio.Event()
    outcomes: list[str] = []

    async def edit(text: str) -> None:
        started.set()
        try:
            await release.wait()  # a 429's retry_after
            outcomes.append("finished")
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise

    updater = StatusUpdater(edit, interval=0.01)
    updater.set("⏳ Queued: position 7")
    await asyncio.wait_for(started.wait(), 1.0)
    await asyncio.wait_for(updater.close(timeout=0.05), 1.0)  # returns in time even so
    release.set()
    for _ in range(100):
        if outcomes:
            break
        await asyncio.sleep(0.01)
    assert outcomes == ["finished"]


async def test_closing_the_status_updater_does_not_wait_out_the_pause_between_edits():
    edits: list[str] = []

    async def edit(text: str) -> None:
        edits.append(text)

    updater = StatusUpdater(edit, interval=30.0)
    updater.set("step 1/4")
    for _ in range(100):
        if edits:
            break
        await asyncio.sleep(0.01)
    began = time.monotonic()
    await updater.close(timeout=5.0)
    assert time.monotonic() - began < 1.0 and edits == ["step 1/4"]


async def test_status_edits_in_a_busy_channel_are_coalesced_to_the_newest():
    edits: list[str] = []
    room = [0.3]

    def gate() -> float:  # busy for the first 0.3 s, then free
        wait, room[0] = room[0], 0.0
        return wait

    async def edit(text: str) -> None:
        edits.append(text)

    updater = StatusUpdater(edit, interval=0.01, gate=gate)
    for position in range(9, 0, -1):
        updater.set(f"position {position}")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    await updater.close()
    assert edits == ["position 1"]


async def test_a_state_the_delivery_could_not_show_yet_is_tried_again():
    """``Delivery.show`` returns False while an earlier edit outlives its bound: the state is not dropped."""
    answers = [False, True]
    edits: list[str] = []

    async def edit(text: str) -> bool:
        edits.append(text)
        return answers.pop(0) if answers else True

    updater = StatusUpdater(edit, interval=0.01)
    updater.set("⏳ Queued: position 3")
    for _ in range(100):
        if len(edits) >= 2:
            break
        await asyncio.sleep(0.01)
    await updater.close()
    assert edits == ["⏳ Queued: position 3", "⏳ Queued: position 3"]


async def test_a_preview_the_screen_refuses_is_left_out_and_the_text_still_shown():
    edits: list[tuple[str, bytes | None]] = []

    async def edit(text: str, preview: bytes | None = None) -> None:
        edits.append((text, preview))

    async def screen(png: bytes) -> bool:
        await asyncio.sleep(0)
        return png != b"flagged"

    updater = StatusUpdater(edit, interval=0.0, screen=screen)
    updater.set("step 1/4", True, b"flagged")
    for _ in range(100):
        if edits:
            break
        await asyncio.sleep(0.01)
    updater.set("step 2/4", True, b"fine")
    for _ in range(100):
        if len(edits) == 2:
            break
        await asyncio.sleep(0.01)
    updater.set("step 2/4", True, b"flagged")  # the same text and a refused preview: no edit at all
    await asyncio.sleep(0.05)
    await updater.close()
    assert edits == [("step 1/4", None), ("step 2/4", b"fine")]
