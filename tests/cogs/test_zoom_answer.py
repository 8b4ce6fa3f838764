"""Zoom and pan through real discord.py (#21 item 4): the click is answered ("thinking…") before the canvas is
built, and the new final then takes that answer's place."""

from __future__ import annotations

from core import canvas
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE


async def test_a_zoom_click_is_answered_before_the_canvas_is_built(loopback, monkeypatch):
    env = loopback
    fake = env.fake
    command = await fake.slash("final", {"prompt": "a harbour at noon", "seed": 7})
    final = await fake.wait_for(lambda: command.original if command.original and command.original.attachments else None)
    job = await env.job_of(final)
    answered_first: list[bool] = []
    real = canvas.outpaint
    click = None

    def outpaint(*args, **kwargs):
        answered_first.append(click is not None and click.callback_type is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(canvas, "outpaint", outpaint)
    click = await fake.click(final, f"job:{job.id}:zoom2", user=fake.world.bob)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    zoomed = await fake.wait_for(lambda: click.original if click.original and click.original.attachments else None)
    assert answered_first == [True]
    assert (await env.job_of(zoomed)).params.outpaint == "zoom2"
