"""What the job service remembers per user and per job stays bounded over a long run."""

from __future__ import annotations

from core.history import NewJob
from tests.core.doubles import FakeEngine, RecordingOrigin
from tests.core.test_jobs import make_service


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_recent_requests_of_users_who_left_are_forgotten(store, tmp_path):
    clock = Clock()
    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine, clock=clock)
    try:
        for user in range(1, 41):
            job = await service.imagine(RecordingOrigin(user_id=user), prompt="a cat")
            engine.finish(job.id)
        assert len(service._recent) == 40
        clock.now += 120  # past the one-minute window: none of them counts any more
        await service.imagine(RecordingOrigin(user_id=999), prompt="a dog")
        assert set(service._recent) == {999}
    finally:
        await service.shutdown(0.0)


async def test_cancel_marks_of_jobs_that_are_not_running_here_are_forgotten(store, tmp_path):
    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine)
    try:
        for _ in range(5):  # stored but not in this process's engine: cancel only marks the row
            orphan = await store.create_job(
                NewJob(kind="draft", mode="imagine", guild_id=10, channel_id=100, user_id=1, prompt="x",
                       model="turbo", width=512, height=512, seed=1, count=4)
            )
            assert "Cancelled" in await service.cancel(orphan.id, user_id=1, moderator=False, guild_id=10)
        await service.imagine(RecordingOrigin(user_id=2), prompt="a dog")
        assert service._user_cancelled == set()
    finally:
        await service.shutdown(0.0)
