"""History records for tests, every field filled: keyword arguments override any of them."""

from __future__ import annotations

from typing import Any

from core.history import JobMode, JobParams, JobRecord, NewJob


def job_record(**changes: Any) -> JobRecord:
    """A stored draft job (id 1, queued): four 512×768 turbo drafts of "p", seed 5."""
    fields: dict[str, Any] = dict(
        id=1,
        kind="draft",
        mode=JobMode.IMAGINE,
        parent_id=None,
        parent_index=None,
        guild_id=10,
        channel_id=100,
        user_id=1,
        prompt="p",
        negative_prompt="n",
        model="turbo",
        width=512,
        height=768,
        steps=1,
        guidance=None,
        seed=5,
        count=4,
        strength=None,
        params=JobParams(),
        status="queued",
        error=None,
        seeds=(),
        timings={},
        created_at=0.0,
        started_at=None,
        finished_at=None,
        source_message_id=None,
        interaction_token=None,
        interaction_expires_at=None,
        result_channel_id=None,
        result_message_id=None,
        favorite=False,
    )
    fields.update(changes)
    return JobRecord(**fields)


def new_job(**changes: Any) -> NewJob:
    """A valid draft job to store: four 512×512 turbo drafts by user 30 in guild 10, seed 1234."""
    fields: dict[str, Any] = dict(
        kind="draft",
        mode=JobMode.IMAGINE,
        guild_id=10,
        channel_id=20,
        user_id=30,
        prompt="a red fox in the snow",
        model="turbo",
        width=512,
        height=512,
        seed=1234,
        count=4,
    )
    fields.update(changes)
    return NewJob(**fields)
