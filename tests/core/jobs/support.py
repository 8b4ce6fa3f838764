"""Helpers for the job service's tests (and for tests of what renders a job row)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import SecretStr

from cogs.ui.layout import Layout
from core.history import HistoryStore, JobRecord
from core.jobs import JobService
from core.settings import BotSettings
from engine.api import ImageEngine


def make_service(store: HistoryStore, engine: ImageEngine, **kwargs: Any) -> JobService:
    """A service on ``store`` and ``engine`` with fast status edits and no channel pacing (tested on its own)."""
    kwargs.setdefault("pace_channels", False)
    kwargs.setdefault("controls", Layout())  # the buttons bot.py hands in
    settings = kwargs.pop(
        "settings",  # model_construct: faster than a user may set, unchecked
        BotSettings.model_construct(token=SecretStr("test"), progress_interval=0.01, queue_update_interval=0.02),
    )
    return JobService(
        client=None,  # type: ignore[arg-type]  (only restart deliveries use it; the tests inject those)
        store=store,
        engine=engine,
        settings=settings,
        **kwargs,
    )


async def wait_status(store: HistoryStore, job_id: int, status: str, timeout: float = 20.0) -> JobRecord:
    """The row of ``job_id`` once its status is ``status`` (fails after ``timeout`` s)."""

    async def poll() -> JobRecord:
        while True:
            row = await store.get_job(job_id)
            if row is not None and row.status == status:
                return row
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), timeout)
