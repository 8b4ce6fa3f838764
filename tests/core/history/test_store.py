"""HistoryStore (core/history/store.py) against real SQLite files: jobs, their states, history pages, tokens."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.history import GuildStyle, HistoryStore, JobNotFound, JobParams, JobRecord, NewJob
from tests.core.history.sqlite import REPO_ROOT, raw, stored_tokens
from tests.core.records import new_job


async def test_create_job_returns_a_queued_record(store: HistoryStore) -> None:
    new = new_job(
        parent_id=None,
        negative_prompt="blurry",
        steps=2,
        guidance=0.0,
        strength=None,
        params=JobParams(aspect="1:1", extra={"nested": {"a": [1, 2]}}),
        source_message_id=555,
        interaction_token="tok",
        interaction_expires_at=1_700_000_900.0,
    )
    record = await store.create_job(new)
    assert isinstance(record, JobRecord)
    assert record.id >= 1
    assert record.status == "queued" and not record.finished
    assert (record.kind, record.mode, record.prompt, record.negative_prompt) == (
        "draft",
        "imagine",
        new.prompt,
        "blurry",
    )
    assert (record.guild_id, record.channel_id, record.user_id) == (10, 20, 30)
    assert (record.model, record.width, record.height, record.steps, record.guidance) == ("turbo", 512, 512, 2, 0.0)
    assert (record.seed, record.count, record.strength) == (1234, 4, None)
    assert record.params == JobParams(aspect="1:1", extra={"nested": {"a": [1, 2]}})
    assert record.seeds == () and record.timings == {} and record.error is None
    assert record.started_at is None and record.finished_at is None and record.created_at > 1_700_000_000
    assert record.source_message_id == 555
    assert record.interaction_token == "tok" and record.interaction_expires_at == 1_700_000_900.0
    assert record.result_channel_id is None and record.result_message_id is None and record.favorite is False
    assert "tok" not in repr(record) and "tok" not in repr(new)
    with pytest.raises(AttributeError):
        record.status = "done"  # type: ignore[misc]


async def test_child_job_references_parent(store: HistoryStore) -> None:
    parent = await store.create_job(new_job())
    child = await store.create_job(
        new_job(kind="final", mode="upscale", model="ssd-1b", parent_id=parent.id, parent_index=2)
    )
    assert (child.parent_id, child.parent_index) == (parent.id, 2)


async def test_foreign_keys_are_enforced_and_failed_writes_leave_nothing(store: HistoryStore, db_path: Path) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await store.create_job(new_job(parent_id=9999, parent_index=0))
    with pytest.raises(TypeError):
        await store.create_job(new_job(params=JobParams(extra={"not json": {1, 2}})))
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    # The store is not left inside a transaction: it still works.
    assert (await store.create_job(new_job())).id >= 1


async def test_job_lifecycle(store: HistoryStore) -> None:
    created = await store.create_job(new_job())
    assert await store.mark_running(created.id) is True
    running = await store.get_job(created.id)
    assert running is not None and running.status == "running" and running.started_at is not None

    assert await store.finish_job(
        created.id,
        seeds=[1234, 1235, 1236, 1237],
        timings={"run": 0.8, "total": 1},
        result_channel_id=20,
        result_message_id=777,
    )
    done = await store.get_job(created.id)
    assert done is not None
    assert done.status == "done" and done.finished
    assert done.seeds == (1234, 1235, 1236, 1237)
    assert done.timings == {"run": 0.8, "total": 1.0}
    assert (done.result_channel_id, done.result_message_id) == (20, 777)
    assert done.finished_at is not None and done.finished_at >= done.started_at  # type: ignore[operator]

    # Finished jobs stay finished.
    assert await store.cancel_job(created.id) is False
    assert await store.fail_job(created.id, "late") is False
    assert await store.mark_running(created.id) is False
    assert await store.requeue(created.id) is False
    assert await store.get_job(created.id) == done


async def test_cancel_fail_and_requeue(store: HistoryStore) -> None:
    queued = await store.create_job(new_job())
    assert await store.cancel_job(queued.id) is True
    cancelled = await store.get_job(queued.id)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert await store.cancel_job(queued.id) is False
    # A result that arrives after the cancel does not resurrect the job.
    assert await store.finish_job(queued.id, seeds=[1], timings={}) is False
    assert (await store.get_job(queued.id)).status == "cancelled"  # type: ignore[union-attr]

    running = await store.create_job(new_job())
    await store.mark_running(running.id)
    assert await store.cancel_job(running.id) is True

    failing = await store.create_job(new_job())
    await store.mark_running(failing.id)
    assert await store.fail_job(failing.id, "CUDA out of memory") is True
    failed = await store.get_job(failing.id)
    assert failed is not None and failed.status == "failed" and failed.error == "CUDA out of memory"

    requeued = await store.create_job(new_job())
    assert await store.requeue(requeued.id) is False  # queued, not running
    await store.mark_running(requeued.id)
    assert await store.requeue(requeued.id) is True
    back = await store.get_job(requeued.id)
    assert back is not None and back.status == "queued" and back.started_at is None


async def test_finish_without_result_message_keeps_an_earlier_one(store: HistoryStore) -> None:
    created = await store.create_job(new_job())
    await store.set_result_message(created.id, 21, 888)
    await store.finish_job(created.id, seeds=[1], timings={})
    done = await store.get_job(created.id)
    assert done is not None and (done.result_channel_id, done.result_message_id) == (21, 888)


async def test_finish_unposted_forgets_the_status_message(store: HistoryStore) -> None:
    created = await store.create_job(new_job())
    await store.set_result_message(created.id, 21, 888)  # the "⏳ Queued" placeholder
    assert await store.finish_unposted(created.id, seeds=[1, 2], timings={"run": 1.5}, steps=3) is True
    done = await store.get_job(created.id)
    assert done is not None and done.status == "done" and done.seeds == (1, 2) and done.steps == 3
    assert (done.result_channel_id, done.result_message_id) == (None, None)  # nothing was posted
    assert await store.finish_unposted(created.id, seeds=[1], timings={}) is False


async def test_image_in_use_by_rows_that_may_run_or_be_made_again(store: HistoryStore) -> None:
    key, other = "a" * 64, "b" * 64
    first = await store.create_job(new_job(params=JobParams(init_image=key)))
    assert await store.image_in_use(key) is True
    assert await store.image_in_use(key, besides=[first.id]) is False  # only the row asking
    assert await store.image_in_use(other) is False
    params = JobParams(init_image=other, mask_image=key)
    masked = await store.create_job(new_job(kind="final", mode="inpaint", params=params))
    assert await store.image_in_use(key, besides=[first.id]) is True  # the other row's mask
    await store.finish_job(masked.id, seeds=[1], timings={})
    assert await store.image_in_use(key, besides=[first.id]) is True  # done: 🔁 and /show make it again
    await store.cancel_job(first.id)
    refused = await store.create_job(new_job(params=JobParams(init_image=other)))
    await store.fail_job(refused.id, "The queue is full.")
    assert await store.image_in_use(other, besides=[masked.id]) is False  # failed and cancelled rows let go
    assert await store.image_in_use("x' OR 1=1 --") is False  # a value, never SQL
    borrowed = "c" * 64
    borrower = await store.create_job(new_job(params=JobParams(reference_image=borrowed)))
    assert await store.image_in_use(borrowed) is True  # an image reference is needed again as much
    assert await store.image_in_use(borrowed, besides=[borrower.id]) is False


async def test_finish_job_records_the_steps_the_engine_used(tmp_path):
    store = await HistoryStore.open(tmp_path / "steps.sqlite3")
    try:
        job = await store.create_job(
            NewJob(kind="final", mode="final", guild_id=1, channel_id=2, user_id=3, prompt="p", model="ssd-1b",
                   width=1024, height=1024, seed=5)
        )
        assert job.steps is None  # asked for with the engine's default
        await store.finish_job(job.id, seeds=[5], timings={"run": 1.0}, steps=28)
        assert (await store.get_job(job.id)).steps == 28
    finally:
        await store.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.mark_running(404),
        lambda s: s.finish_job(404, seeds=[], timings={}),
        lambda s: s.fail_job(404, "x"),
        lambda s: s.cancel_job(404),
        lambda s: s.requeue(404),
        lambda s: s.set_result_message(404, 1, 2),
        lambda s: s.set_favorite(404, True),
    ],
)
async def test_unknown_job_id_raises(store: HistoryStore, call: Callable) -> None:
    with pytest.raises(JobNotFound):
        await call(store)


async def test_get_job_and_job_by_message(store: HistoryStore) -> None:
    a = await store.create_job(new_job())
    b = await store.create_job(new_job())
    await store.set_result_message(a.id, 20, 1001)
    await store.finish_job(b.id, seeds=[1], timings={}, result_channel_id=20, result_message_id=1002)
    found_a = await store.job_by_message(1001)
    found_b = await store.job_by_message(1002)
    assert found_a is not None and found_a.id == a.id and found_a.result_channel_id == 20
    assert found_b is not None and found_b.id == b.id
    assert await store.job_by_message(1003) is None
    assert await store.get_job(9999) is None


async def test_unfinished_jobs_oldest_first(store: HistoryStore) -> None:
    first = await store.create_job(new_job(prompt="first"))
    done = await store.create_job(new_job(prompt="done"))
    second = await store.create_job(new_job(prompt="second"))
    gone = await store.create_job(new_job(prompt="cancelled"))
    third = await store.create_job(new_job(prompt="third"))
    await store.mark_running(second.id)
    await store.mark_running(done.id)
    await store.finish_job(done.id, seeds=[1], timings={})
    await store.cancel_job(gone.id)
    unfinished = await store.unfinished_jobs()
    assert [j.id for j in unfinished] == [first.id, second.id, third.id]
    assert [j.status for j in unfinished] == ["queued", "running", "queued"]


async def test_count_recent_counts_every_status(store: HistoryStore) -> None:
    clock_start = (await store.create_job(new_job(user_id=1))).created_at
    running = await store.create_job(new_job(user_id=1))
    await store.mark_running(running.id)
    finished = await store.create_job(new_job(user_id=1))
    await store.fail_job(finished.id, "boom")
    await store.create_job(new_job(user_id=2))
    assert await store.count_recent(1, since=clock_start) == 3
    assert await store.count_recent(1, since=clock_start + 0.5) == 2
    assert await store.count_recent(1, since=finished.created_at + 0.5) == 0


async def test_history_pages_newest_first(store: HistoryStore) -> None:
    ids = [(await store.create_job(new_job(prompt=f"picture {i}"))).id for i in range(25)]
    newest_first = list(reversed(ids))

    page1, total = await store.history(user_id=30, limit=10)
    page2, total2 = await store.history(user_id=30, limit=10, offset=10)
    page3, total3 = await store.history(user_id=30, limit=10, offset=20)
    beyond, total4 = await store.history(user_id=30, limit=10, offset=40)
    assert total == total2 == total3 == total4 == 25
    assert [j.id for j in page1 + page2 + page3] == newest_first
    assert len(page3) == 5 and beyond == []
    created = [j.created_at for j in page1]
    assert created == sorted(created, reverse=True)
    with pytest.raises(ValueError):
        await store.history(user_id=30, limit=0)
    with pytest.raises(ValueError):
        await store.history(user_id=30, offset=-1)


async def test_history_orders_equal_times_by_id(db_path: Path) -> None:
    store = await HistoryStore.open(db_path, clock=lambda: 1_700_000_000.0)
    try:
        ids = [(await store.create_job(new_job())).id for _ in range(3)]
        page, _ = await store.history(user_id=30)
        assert [j.id for j in page] == ids[::-1]
    finally:
        await store.close()


async def test_history_is_per_user_and_per_guild(store: HistoryStore) -> None:
    alice_g1 = await store.create_job(new_job(user_id=1, guild_id=100, prompt="alice cat"))
    alice_dm = await store.create_job(new_job(user_id=1, guild_id=None, prompt="alice dm cat"))
    bob_g1 = await store.create_job(new_job(user_id=2, guild_id=100, prompt="bob cat"))
    bob_g2 = await store.create_job(new_job(user_id=2, guild_id=200, prompt="bob other cat"))

    page, total = await store.history(user_id=1)
    assert [j.id for j in page] == [alice_dm.id, alice_g1.id] and total == 2
    page, total = await store.history(user_id=2, search="cat")
    assert [j.id for j in page] == [bob_g2.id, bob_g1.id] and total == 2
    page, total = await store.history(user_id=1, guild_id=100)
    assert [j.id for j in page] == [alice_g1.id] and total == 1
    page, total = await store.history(user_id=None, guild_id=100)
    assert [j.id for j in page] == [bob_g1.id, alice_g1.id] and total == 2
    page, total = await store.history(user_id=3)
    assert page == [] and total == 0
    with pytest.raises(ValueError, match="user_id"):
        await store.history(user_id=None, guild_id=None)


async def test_favorites(store: HistoryStore) -> None:
    a = await store.create_job(new_job(prompt="one"))
    b = await store.create_job(new_job(prompt="two"))
    await store.create_job(new_job(prompt="three"))
    other = await store.create_job(new_job(prompt="one", user_id=99))
    await store.set_favorite(a.id, True)
    await store.set_favorite(b.id, True)
    await store.set_favorite(other.id, True)
    assert (await store.get_job(a.id)).favorite is True  # type: ignore[union-attr]

    page, total = await store.history(user_id=30, favorites=True)
    assert [j.id for j in page] == [b.id, a.id] and total == 2
    page, total = await store.history(user_id=30, favorites=True, search="ONE")
    assert [j.id for j in page] == [a.id] and total == 1

    await store.set_favorite(b.id, False)
    page, total = await store.history(user_id=30, favorites=True)
    assert [j.id for j in page] == [a.id] and total == 1


async def test_expired_interaction_tokens_are_cleared(db_path: Path) -> None:
    now = 1_000_000.0
    store = await HistoryStore.open(db_path, clock=lambda: now)
    try:
        old = await store.create_job(new_job(interaction_token="old-token", interaction_expires_at=now - 1))
        live = await store.create_job(new_job(interaction_token="live-token", interaction_expires_at=now + 600))
        assert await store.clear_expired_tokens() == 1
        assert stored_tokens(db_path) == {old.id: None, live.id: "live-token"}
        assert (await store.get_job(live.id)).interaction_token == "live-token"
        now += 601
        assert await store.clear_expired_tokens() == 1
        assert stored_tokens(db_path) == {old.id: None, live.id: None}
    finally:
        await store.close()


async def test_tokens_expire_without_anyone_asking(db_path: Path) -> None:
    clock = {"now": 1_000_000.0}
    store = await HistoryStore.open(db_path, clock=lambda: clock["now"], token_sweep_interval=0.05)
    try:
        token_job = await store.create_job(new_job(interaction_token="t", interaction_expires_at=clock["now"] + 900))
        clock["now"] += 901
        for _ in range(100):
            if stored_tokens(db_path)[token_job.id] is None:
                break
            await asyncio.sleep(0.02)
        assert stored_tokens(db_path)[token_job.id] is None
    finally:
        await store.close()


async def test_tokens_expired_while_the_bot_was_down_are_cleared_on_open(db_path: Path) -> None:
    store = await HistoryStore.open(db_path, clock=lambda: 1_000_000.0)
    stale = await store.create_job(new_job(interaction_token="t", interaction_expires_at=1_000_100.0))
    await store.close()
    store = await HistoryStore.open(db_path, clock=lambda: 1_000_200.0, token_sweep_interval=None)
    await store.close()
    assert stored_tokens(db_path)[stale.id] is None


def test_history_module_imports_neither_engine_nor_discord() -> None:
    code = (
        "import sys, core.history; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'discord', 'torch')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- style presets


async def test_guild_styles_are_kept_per_server_by_name(store: HistoryStore, db_path: Path) -> None:
    assert await store.guild_styles(10) == []
    await store.put_guild_style(GuildStyle(10, "noir", "black and white", "color"))
    await store.put_guild_style(GuildStyle(10, "anime", hidden=True))
    await store.put_guild_style(GuildStyle(11, "noir", "film noir"))
    assert await store.guild_styles(10) == [
        GuildStyle(10, "anime", hidden=True),
        GuildStyle(10, "noir", "black and white", "color"),
    ]
    await store.put_guild_style(GuildStyle(10, "noir", "hard shadows"))  # the same name replaces the row
    await store.put_guild_style(GuildStyle(10, "anime", "cel shading"))  # a hidden one shown again
    assert await store.guild_styles(10) == [
        GuildStyle(10, "anime", "cel shading"),
        GuildStyle(10, "noir", "hard shadows"),
    ]
    assert await store.delete_guild_style(10, "noir") is True
    assert await store.delete_guild_style(10, "noir") is False
    assert [s.name for s in await store.guild_styles(10)] == ["anime"]
    assert await store.guild_styles(11) == [GuildStyle(11, "noir", "film noir")]
    with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO guild_styles (guild_id, name) VALUES (10, '')")


def test_a_guild_style_record_checks_its_types() -> None:
    with pytest.raises(TypeError, match="name"):
        GuildStyle(10, "")
    with pytest.raises(TypeError, match="hidden"):
        GuildStyle(10, "x", hidden=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prompt_suffix"):
        GuildStyle(10, "x", None)  # type: ignore[arg-type]
