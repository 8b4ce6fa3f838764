"""Zoom and pan answer Discord, then check the member's limits, before building the canvas (#21 item 4): on an
upscaled final (a 4096 px canvas) that work can outlast Discord's 3 seconds, and a member over a limit costs none."""

from __future__ import annotations

import threading

from core import canvas
from core.delivery import Delivery
from tests.core.doubles import RecordingOrigin
from tests.core.jobs.support import wait_status


class OrderOrigin(RecordingOrigin):
    """Records, in order, the early answer (defer) and the job's acknowledgement."""

    def __init__(self, events: list, **kwargs) -> None:
        super().__init__(**kwargs)
        self.events = events

    async def defer(self) -> None:
        self.events.append("defer")

    async def acknowledge(self, content: str) -> Delivery:
        self.events.append("acknowledge")
        return await super().acknowledge(content)


async def final_done(service, store, engine):
    job = await service.final(RecordingOrigin(), prompt="a harbour", seed=3)
    engine.finish(job.id)
    return await wait_status(store, job.id, "done")


def recording_canvas(monkeypatch, events: list) -> None:
    real = canvas.outpaint

    def outpaint(*args, **kwargs):
        events.append(("canvas", "worker" if threading.current_thread() is not threading.main_thread() else "loop"))
        return real(*args, **kwargs)

    monkeypatch.setattr(canvas, "outpaint", outpaint)


async def test_zoom_answers_discord_first_and_builds_the_canvas_in_a_worker_thread(service, store, engine, monkeypatch):
    parent = await final_done(service, store, engine)
    events: list = []
    recording_canvas(monkeypatch, events)
    origin = OrderOrigin(events)
    job = await service.outpaint(origin, parent.id, "zoom2")
    assert origin.refusals == [] and job is not None
    assert events == ["defer", ("canvas", "worker"), "acknowledge"]


async def test_a_member_over_a_limit_costs_no_canvas_work(service, store, engine, monkeypatch):
    parent = await final_done(service, store, engine)
    await service.guilds.update(10, max_jobs_per_minute=0)
    events: list = []
    recording_canvas(monkeypatch, events)
    origin = OrderOrigin(events, user_id=2)
    assert await service.outpaint(origin, parent.id, "pan_left") is None
    assert len(origin.refusals) == 1 and "per minute" in origin.refusals[0]
    assert events == ["defer"]  # answered, refused, and no canvas built
