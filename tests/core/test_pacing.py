"""ChannelPacer: results first, status edits only while the channel has room."""

from __future__ import annotations

import asyncio

from core.pacing import ChannelPacer


def test_the_channel_pacer_holds_status_edits_while_the_channel_is_full():
    now = [100.0]
    pacer = ChannelPacer(count=4, per=5.0, clock=lambda: now[0])
    assert [pacer.status_gate(7) for _ in range(4)] == [0.0] * 4
    assert pacer.status_gate(7) == 5.0 and pacer.delay(7) == 5.0
    assert pacer.delay(8) == 0.0  # other channels are free
    assert pacer.status_gate(7, crowded=False) == 0.0  # a job alone in its channel is spaced by its own interval
    now[0] += 5.0
    assert pacer.status_gate(7) == 0.0


async def test_a_waiting_result_goes_before_status_edits():
    pacer = ChannelPacer(count=2, per=0.3)
    pacer.take(7)
    pacer.take(7)
    result = asyncio.create_task(pacer.turn(7, timeout=5.0))
    await asyncio.sleep(0.05)
    assert pacer.status_gate(7) > 0  # held back for the result, though a slot is about to free
    await asyncio.wait_for(result, 2.0)
    assert pacer.status_gate(7) == 0.0


async def test_results_waiting_for_a_busy_channel_are_posted_first_made_first_posted():
    """A third final made after two other members' first ones waits behind them, though its wait began first."""
    pacer = ChannelPacer(count=1, per=0.2)
    pacer.take(7)  # the channel is full
    posted: list[str] = []

    async def result(name: str, made: float) -> None:
        await pacer.turn(7, timeout=10.0, made=made)
        posted.append(name)

    third = asyncio.create_task(result("alice #3", made=30.0))
    await asyncio.sleep(0.01)  # its timer is set first: it would fire first
    first = [asyncio.create_task(result(name, made)) for name, made in (("carol #1", 20.0), ("bob #1", 10.0))]
    await asyncio.wait_for(asyncio.gather(third, *first), 5.0)
    assert posted == ["bob #1", "carol #1", "alice #3"]

