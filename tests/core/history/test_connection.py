"""The one connection (core/history/connection.py): committed writes, a crash loses nothing, no interleaving."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.history import HistoryError, HistoryStore, JobRecord
from tests.core.history.sqlite import REPO_ROOT, raw
from tests.core.records import new_job


async def test_memory_database_works() -> None:
    store = await HistoryStore.open(":memory:")
    try:
        created = await store.create_job(new_job())
        assert (await store.get_job(created.id)) == created
    finally:
        await store.close()


async def test_created_job_is_committed_before_it_finishes(store: HistoryStore, db_path: Path) -> None:
    created = await store.create_job(new_job(prompt="seen from outside"))
    await store.mark_running(created.id)
    with raw(db_path) as conn:  # another connection, while the store is still open and the job unfinished
        row = conn.execute("SELECT prompt, status FROM jobs WHERE id = ?", (created.id,)).fetchone()
    assert row == ("seen from outside", "running")


def test_jobs_survive_a_crash_without_close(db_path: Path) -> None:
    """A process that dies without close() (os._exit) loses nothing it committed."""
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from core.history import HistoryStore, NewJob

        async def main():
            store = await HistoryStore.open({str(db_path)!r})
            base = dict(kind="draft", mode="imagine", guild_id=1, channel_id=2, user_id=3,
                        model="turbo", width=512, height=512, seed=7)
            running = await store.create_job(NewJob(prompt="was running", **base))
            await store.mark_running(running.id)
            await store.create_job(NewJob(prompt="was queued", **base))
            done = await store.create_job(NewJob(prompt="was done", **base))
            await store.finish_job(done.id, seeds=[7], timings={{"run": 0.5}})
            os._exit(9)  # a crash: no close, no checkpoint, no cleanup

        asyncio.run(main())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr

    async def after_restart() -> None:
        store = await HistoryStore.open(db_path)
        try:
            unfinished = await store.unfinished_jobs()
            assert [(j.prompt, j.status) for j in unfinished] == [("was running", "running"), ("was queued", "queued")]
            assert await store.requeue(unfinished[0].id) is True
            again = await store.unfinished_jobs()
            assert [(j.prompt, j.status) for j in again] == [("was running", "queued"), ("was queued", "queued")]
            assert again[0].started_at is None
            page, total = await store.history(user_id=3)
            assert total == 3
            assert page[0].prompt == "was done" and page[0].seeds == (7,) and page[0].timings == {"run": 0.5}
        finally:
            await store.close()

    asyncio.run(after_restart())


async def test_concurrent_writes_do_not_interleave(store: HistoryStore) -> None:
    async def one(i: int) -> JobRecord:
        created = await store.create_job(new_job(user_id=i % 3, prompt=f"prompt {i}"))
        await store.mark_running(created.id)
        await store.finish_job(created.id, seeds=[i], timings={"run": i})
        return created

    created = await asyncio.gather(*(one(i) for i in range(40)))
    assert len({c.id for c in created}) == 40
    for c in created:
        got = await store.get_job(c.id)
        assert got is not None and got.status == "done" and got.seeds == (int(c.prompt.split()[1]),)
    assert sum([(await store.history(user_id=u))[1] for u in range(3)]) == 40


async def test_closed_store_refuses_work(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(HistoryError, match="closed"):
        await store.get_job(1)


async def test_store_as_async_context_manager(db_path: Path) -> None:
    async with await HistoryStore.open(db_path) as store:
        await store.create_job(new_job())
    with pytest.raises(HistoryError):
        await store.count_recent(30, since=0.0)


async def test_cancelled_calls_leave_the_store_usable(store: HistoryStore, db_path: Path) -> None:
    """A task cancelled at any await inside a transaction neither wedges the connection nor half-writes."""
    for delay in range(12):
        task = asyncio.create_task(store.create_job(new_job(prompt=f"cancelled at {delay}")))
        read = asyncio.create_task(store.history(user_id=30))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        read.cancel()
        await asyncio.gather(task, read, return_exceptions=True)
        kept = await store.create_job(new_job(prompt=f"after {delay}"))
        assert (await store.get_job(kept.id)) == kept
    with raw(db_path) as conn:
        rows = conn.execute("SELECT prompt, status FROM jobs").fetchall()
    assert all(status == "queued" for _, status in rows)
    assert sum(prompt.startswith("after") for prompt, _ in rows) == 12
