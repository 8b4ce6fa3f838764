"""HistoryStore against real SQLite files: migrations, crash safety, jobs, history, settings, prefs."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.history import (
    MIGRATIONS_DIR,
    GuildSettings,
    HistoryError,
    HistoryStore,
    JobNotFound,
    JobRecord,
    MigrationError,
    NewJob,
    UserPrefs,
    _history_sql,
    escape_like,
    load_migrations,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LATEST = len(list(MIGRATIONS_DIR.glob("*.sql")))


class FakeClock:
    """Unix seconds that move one second forward on every read, so creation order is unambiguous."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def job(**changes: object) -> NewJob:
    """A valid draft job; keyword arguments override fields."""
    fields: dict[str, object] = dict(
        kind="draft",
        mode="imagine",
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
    return NewJob(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nested" / "history.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[HistoryStore]:
    s = await HistoryStore.open(db_path, clock=FakeClock())
    yield s
    await s.close()


def raw(path: Path) -> sqlite3.Connection:
    """A second, plain sqlite3 connection to the same file (as another process would have)."""
    return sqlite3.connect(path)


def user_version(path: Path) -> int:
    with raw(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with raw(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def migrations_copy(tmp_path: Path, extra: dict[str, str]) -> Path:
    """The real migrations plus ``extra`` files (name -> SQL) in a fresh directory."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    for name, sql in extra.items():
        (directory / name).write_text(textwrap.dedent(sql), encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- migrations


async def test_open_creates_directories_and_migrates_to_latest(db_path: Path) -> None:
    assert not db_path.parent.exists()
    store = await HistoryStore.open(db_path)
    try:
        assert LATEST >= 1
        assert store.schema_version == LATEST
    finally:
        await store.close()
    assert user_version(db_path) == LATEST
    assert {"jobs", "guild_settings", "image_channels", "user_prefs"} <= tables(db_path)
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    created = await store.create_job(job())
    await store.close()
    for _ in range(2):
        store = await HistoryStore.open(db_path)
        assert store.schema_version == LATEST
        assert await store.get_job(created.id) == created
        await store.close()
    assert user_version(db_path) == LATEST


async def test_failing_migration_leaves_version_and_data_untouched(db_path: Path, tmp_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    created = await store.create_job(job(prompt="keep me"))
    await store.close()

    broken = migrations_copy(
        tmp_path,
        {
            f"{LATEST + 1:04d}_broken.sql": """
                CREATE TABLE half_done (x INTEGER);
                UPDATE jobs SET prompt = 'clobbered';
                ALTER TABLE jobs ADD COLUMN half_column TEXT;
                INSERT INTO no_such_table VALUES (1);
            """
        },
    )
    with pytest.raises(MigrationError, match="broken"):
        await HistoryStore.open(db_path, migrations_dir=broken)

    assert user_version(db_path) == LATEST
    assert "half_done" not in tables(db_path)
    with raw(db_path) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
        assert "half_column" not in columns
        assert conn.execute("SELECT prompt FROM jobs WHERE id = ?", (created.id,)).fetchone()[0] == "keep me"

    store = await HistoryStore.open(db_path)  # the real migrations still open it
    try:
        assert (await store.get_job(created.id)) == created
    finally:
        await store.close()


async def test_each_migration_is_its_own_transaction(db_path: Path, tmp_path: Path) -> None:
    directory = migrations_copy(
        tmp_path,
        {
            f"{LATEST + 1:04d}_add_note.sql": "ALTER TABLE jobs ADD COLUMN note TEXT;",
            f"{LATEST + 2:04d}_broken.sql": "CREATE TABLE t (x); SELECT * FROM nowhere;",
        },
    )
    with pytest.raises(MigrationError):
        await HistoryStore.open(db_path, migrations_dir=directory)
    assert user_version(db_path) == LATEST + 1
    with raw(db_path) as conn:
        assert "note" in {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
    assert "t" not in tables(db_path)


async def test_newer_database_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with raw(db_path) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(MigrationError, match="newer"):
        await HistoryStore.open(db_path)
    assert user_version(db_path) == 999


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "CREATE TABLE a (x);", "0003_c.sql": "CREATE TABLE c (x);"}, "without gaps"),
        ({"0001_a.sql": "CREATE TABLE a (x);", "0001_b.sql": "CREATE TABLE b (x);"}, "share version"),
        ({"1_a.sql": "CREATE TABLE a (x);"}, "NNNN_name"),
        ({}, "No migrations"),
    ],
)
def test_load_migrations_rejects_bad_directories(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, sql in files.items():
        (tmp_path / name).write_text(sql, encoding="utf-8")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


async def test_migration_with_its_own_commit_is_refused(db_path: Path, tmp_path: Path) -> None:
    directory = migrations_copy(tmp_path, {f"{LATEST + 1:04d}_commit.sql": "CREATE TABLE t (x);\nCOMMIT;\n"})
    with pytest.raises(MigrationError, match="BEGIN/COMMIT"):
        await HistoryStore.open(db_path, migrations_dir=directory)
    assert user_version(db_path) == LATEST
    assert "t" not in tables(db_path)


async def test_trigger_in_migration_is_allowed(db_path: Path, tmp_path: Path) -> None:
    directory = migrations_copy(
        tmp_path,
        {
            f"{LATEST + 1:04d}_trigger.sql": """
                CREATE TABLE audit (job_id INTEGER);
                CREATE TRIGGER jobs_audit AFTER INSERT ON jobs BEGIN
                    INSERT INTO audit (job_id) VALUES (new.id);
                END;
            """
        },
    )
    store = await HistoryStore.open(db_path, migrations_dir=directory)
    try:
        created = await store.create_job(job())
    finally:
        await store.close()
    with raw(db_path) as conn:
        assert conn.execute("SELECT job_id FROM audit").fetchall() == [(created.id,)]


async def test_memory_database_works() -> None:
    store = await HistoryStore.open(":memory:")
    try:
        created = await store.create_job(job())
        assert (await store.get_job(created.id)) == created
    finally:
        await store.close()


# --------------------------------------------------------------------------- crash safety


async def test_created_job_is_committed_before_it_finishes(store: HistoryStore, db_path: Path) -> None:
    created = await store.create_job(job(prompt="seen from outside"))
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


# --------------------------------------------------------------------------- jobs


async def test_create_job_returns_a_queued_record(store: HistoryStore) -> None:
    new = job(
        parent_id=None,
        negative_prompt="blurry",
        steps=2,
        guidance=0.0,
        strength=None,
        params={"aspect": "1:1", "nested": {"a": [1, 2]}},
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
    assert record.params == {"aspect": "1:1", "nested": {"a": [1, 2]}}
    assert record.seeds == () and record.timings == {} and record.error is None
    assert record.started_at is None and record.finished_at is None and record.created_at > 1_700_000_000
    assert record.source_message_id == 555
    assert record.interaction_token == "tok" and record.interaction_expires_at == 1_700_000_900.0
    assert record.result_channel_id is None and record.result_message_id is None and record.favorite is False
    assert "tok" not in repr(record) and "tok" not in repr(new)
    with pytest.raises(AttributeError):
        record.status = "done"  # type: ignore[misc]


async def test_child_job_references_parent(store: HistoryStore) -> None:
    parent = await store.create_job(job())
    child = await store.create_job(
        job(kind="final", mode="upscale", model="ssd-1b", parent_id=parent.id, parent_index=2)
    )
    assert (child.parent_id, child.parent_index) == (parent.id, 2)


async def test_foreign_keys_are_enforced_and_failed_writes_leave_nothing(store: HistoryStore, db_path: Path) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await store.create_job(job(parent_id=9999, parent_index=0))
    with pytest.raises(TypeError):
        await store.create_job(job(params={"not json": {1, 2}}))
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    # The store is not left inside a transaction: it still works.
    assert (await store.create_job(job())).id >= 1


def test_new_job_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="kind"):
        job(kind="sketch")
    with pytest.raises(ValueError, match="count"):
        job(count=0)
    with pytest.raises(ValueError, match="parent_index"):
        job(parent_index=1)
    with pytest.raises(TypeError):
        NewJob("draft", "imagine")  # type: ignore[misc]  # keyword arguments only
    params = {"a": 1}
    new = job(params=params)
    params["a"] = 2
    assert new.params == {"a": 1}


async def test_job_lifecycle(store: HistoryStore) -> None:
    created = await store.create_job(job())
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
    queued = await store.create_job(job())
    assert await store.cancel_job(queued.id) is True
    cancelled = await store.get_job(queued.id)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert await store.cancel_job(queued.id) is False
    # A result that arrives after the cancel does not resurrect the job.
    assert await store.finish_job(queued.id, seeds=[1], timings={}) is False
    assert (await store.get_job(queued.id)).status == "cancelled"  # type: ignore[union-attr]

    running = await store.create_job(job())
    await store.mark_running(running.id)
    assert await store.cancel_job(running.id) is True

    failing = await store.create_job(job())
    await store.mark_running(failing.id)
    assert await store.fail_job(failing.id, "CUDA out of memory") is True
    failed = await store.get_job(failing.id)
    assert failed is not None and failed.status == "failed" and failed.error == "CUDA out of memory"

    requeued = await store.create_job(job())
    assert await store.requeue(requeued.id) is False  # queued, not running
    await store.mark_running(requeued.id)
    assert await store.requeue(requeued.id) is True
    back = await store.get_job(requeued.id)
    assert back is not None and back.status == "queued" and back.started_at is None


async def test_finish_without_result_message_keeps_an_earlier_one(store: HistoryStore) -> None:
    created = await store.create_job(job())
    await store.set_result_message(created.id, 21, 888)
    await store.finish_job(created.id, seeds=[1], timings={})
    done = await store.get_job(created.id)
    assert done is not None and (done.result_channel_id, done.result_message_id) == (21, 888)


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
    a = await store.create_job(job())
    b = await store.create_job(job())
    await store.set_result_message(a.id, 20, 1001)
    await store.finish_job(b.id, seeds=[1], timings={}, result_channel_id=20, result_message_id=1002)
    found_a = await store.job_by_message(1001)
    found_b = await store.job_by_message(1002)
    assert found_a is not None and found_a.id == a.id and found_a.result_channel_id == 20
    assert found_b is not None and found_b.id == b.id
    assert await store.job_by_message(1003) is None
    assert await store.get_job(9999) is None


async def test_unfinished_jobs_oldest_first(store: HistoryStore) -> None:
    first = await store.create_job(job(prompt="first"))
    done = await store.create_job(job(prompt="done"))
    second = await store.create_job(job(prompt="second"))
    gone = await store.create_job(job(prompt="cancelled"))
    third = await store.create_job(job(prompt="third"))
    await store.mark_running(second.id)
    await store.mark_running(done.id)
    await store.finish_job(done.id, seeds=[1], timings={})
    await store.cancel_job(gone.id)
    unfinished = await store.unfinished_jobs()
    assert [j.id for j in unfinished] == [first.id, second.id, third.id]
    assert [j.status for j in unfinished] == ["queued", "running", "queued"]


async def test_count_waiting_and_recent(store: HistoryStore) -> None:
    clock_start = (await store.create_job(job(user_id=1))).created_at
    running = await store.create_job(job(user_id=1))
    await store.mark_running(running.id)
    finished = await store.create_job(job(user_id=1))
    await store.fail_job(finished.id, "boom")
    await store.create_job(job(user_id=2))
    assert await store.count_waiting(1) == 2
    assert await store.count_waiting(2) == 1
    assert await store.count_waiting(3) == 0
    assert await store.count_recent(1, since=clock_start) == 3
    assert await store.count_recent(1, since=clock_start + 0.5) == 2
    assert await store.count_recent(1, since=finished.created_at + 0.5) == 0


async def test_concurrent_writes_do_not_interleave(store: HistoryStore) -> None:
    async def one(i: int) -> JobRecord:
        created = await store.create_job(job(user_id=i % 3, prompt=f"prompt {i}"))
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
        await store.create_job(job())
    with pytest.raises(HistoryError):
        await store.count_waiting(30)


# --------------------------------------------------------------------------- history


async def test_history_pages_newest_first(store: HistoryStore) -> None:
    ids = [(await store.create_job(job(prompt=f"picture {i}"))).id for i in range(25)]
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
        ids = [(await store.create_job(job())).id for _ in range(3)]
        page, _ = await store.history(user_id=30)
        assert [j.id for j in page] == ids[::-1]
    finally:
        await store.close()


TRICKY_PROMPTS = [
    "100% cotton shirt",
    "snake_case robot",
    "back\\slash painting",
    "it's a cat",
    'say "cheese"',
    "tea; DROP TABLE jobs; --",
    "plain landscape",
    "Éclair on a plate",
]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("%", ["100% cotton shirt"]),
        ("0% c", ["100% cotton shirt"]),
        ("_", ["snake_case robot"]),
        ("e_c", ["snake_case robot"]),
        ("\\", ["back\\slash painting"]),
        ("'", ["it's a cat"]),
        ("it's", ["it's a cat"]),
        ('"', ['say "cheese"']),
        ("; DROP TABLE", ["tea; DROP TABLE jobs; --"]),
        ("'; DROP TABLE jobs; --", []),
        ("--", ["tea; DROP TABLE jobs; --"]),
        ("CAT", ["it's a cat"]),
        ("éclair", ["Éclair on a plate"]),
        ("ÉCLAIR", ["Éclair on a plate"]),
        ("nothing like this", []),
        ("", TRICKY_PROMPTS),
        (None, TRICKY_PROMPTS),
    ],
)
async def test_history_search_is_literal(
    store: HistoryStore, db_path: Path, search: str | None, expected: list[str]
) -> None:
    for prompt in TRICKY_PROMPTS:
        await store.create_job(job(prompt=prompt))
    page, total = await store.history(user_id=30, search=search, limit=50)
    assert sorted(j.prompt for j in page) == sorted(expected)
    assert total == len(expected)
    assert "jobs" in tables(db_path)


def test_escape_like() -> None:
    assert escape_like("a%b_c\\d") == "a\\%b\\_c\\\\d"
    assert escape_like("plain") == "plain"


async def test_history_is_per_user_and_per_guild(store: HistoryStore) -> None:
    alice_g1 = await store.create_job(job(user_id=1, guild_id=100, prompt="alice cat"))
    alice_dm = await store.create_job(job(user_id=1, guild_id=None, prompt="alice dm cat"))
    bob_g1 = await store.create_job(job(user_id=2, guild_id=100, prompt="bob cat"))
    bob_g2 = await store.create_job(job(user_id=2, guild_id=200, prompt="bob other cat"))

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
    a = await store.create_job(job(prompt="one"))
    b = await store.create_job(job(prompt="two"))
    await store.create_job(job(prompt="three"))
    other = await store.create_job(job(prompt="one", user_id=99))
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


# --------------------------------------------------------------------------- guild settings


async def test_guild_settings_defaults(store: HistoryStore) -> None:
    settings = await store.guild_settings(5)
    assert settings == GuildSettings(guild_id=5, image_channels=frozenset())
    assert (settings.max_waiting_per_user, settings.max_jobs_per_minute) == (10, 12)
    assert settings.finals_outside_nsfw is True and settings.image_safety == "off"
    assert settings.blocked_words == ()


async def test_update_guild_settings(store: HistoryStore, db_path: Path) -> None:
    updated = await store.update_guild_settings(5, max_waiting_per_user=1, blocked_words=["gore", " gore ", "", "x"])
    assert updated.max_waiting_per_user == 1
    assert updated.blocked_words == ("gore", "x")
    assert updated.max_jobs_per_minute == 12  # untouched fields keep their defaults
    again = await store.update_guild_settings(5, finals_outside_nsfw=False, image_safety="block")
    assert again.max_waiting_per_user == 1 and again.blocked_words == ("gore", "x")
    assert again.finals_outside_nsfw is False and again.image_safety == "block"
    assert await store.guild_settings(5) == again
    assert await store.guild_settings(6) == GuildSettings(guild_id=6, image_channels=frozenset())
    assert await store.update_guild_settings(5) == again  # no changes: no write, same result

    await store.close()
    reopened = await HistoryStore.open(db_path)
    try:
        assert await reopened.guild_settings(5) == again
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"no_such_setting": 1}, ValueError),
        ({"guild_id": 7}, TypeError),  # guild_id is the argument itself, not a setting
        ({"max_waiting_per_user": -1}, ValueError),
        ({"max_waiting_per_user": "3"}, TypeError),
        ({"max_jobs_per_minute": True}, TypeError),
        ({"image_safety": 1}, TypeError),
        ({"image_safety": "maybe"}, ValueError),
        ({"blocked_words": "gore"}, TypeError),
        ({"blocked_words": ["ok", 3]}, TypeError),
        ({"image_channels": [1, "2"]}, TypeError),
        ({"max_waiting_per_user": 9, "typo_field": 1}, ValueError),
    ],
)
async def test_update_guild_settings_rejects_bad_changes(
    store: HistoryStore, changes: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.update_guild_settings(5, **changes)
    assert await store.guild_settings(5) == GuildSettings(guild_id=5, image_channels=frozenset())


async def test_image_channels(store: HistoryStore) -> None:
    await store.add_image_channel(5, 501)
    await store.add_image_channel(5, 502)
    await store.add_image_channel(5, 502)  # twice is fine
    await store.add_image_channel(6, 601)
    assert (await store.guild_settings(5)).image_channels == frozenset({501, 502})
    assert (await store.guild_settings(6)).image_channels == frozenset({601})
    assert await store.remove_image_channel(5, 501) is True
    assert await store.remove_image_channel(5, 501) is False
    assert await store.remove_image_channel(6, 502) is False
    assert (await store.guild_settings(5)).image_channels == frozenset({502})

    replaced = await store.update_guild_settings(5, image_channels={700, 701})
    assert replaced.image_channels == frozenset({700, 701})
    assert (await store.guild_settings(5)).image_channels == frozenset({700, 701})
    assert (await store.guild_settings(6)).image_channels == frozenset({601})


# --------------------------------------------------------------------------- user prefs


async def test_user_prefs(store: HistoryStore, db_path: Path) -> None:
    assert await store.user_prefs(1) == UserPrefs(user_id=1)
    prefs = await store.update_user_prefs(1, aspect="16:9", negative_prompt="blurry", dm_results=True)
    assert prefs == UserPrefs(user_id=1, aspect="16:9", negative_prompt="blurry", dm_results=True)
    prefs = await store.update_user_prefs(1, style_suffix="oil painting", final_model="sdxl", aspect=None)
    assert prefs == UserPrefs(
        user_id=1, negative_prompt="blurry", style_suffix="oil painting", final_model="sdxl", dm_results=True
    )
    assert await store.user_prefs(1) == prefs
    assert await store.user_prefs(2) == UserPrefs(user_id=2)

    with pytest.raises(ValueError, match="colour"):
        await store.update_user_prefs(1, colour="blue")
    with pytest.raises(TypeError):
        await store.update_user_prefs(1, dm_results="yes")
    with pytest.raises(TypeError):
        await store.update_user_prefs(1, aspect=16)
    assert await store.user_prefs(1) == prefs

    await store.close()
    reopened = await HistoryStore.open(db_path)
    try:
        assert await reopened.user_prefs(1) == prefs
    finally:
        await reopened.close()


# --------------------------------------------------------------------------- indexes and independence


async def test_lookups_use_indexes(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    for i in range(300):
        created = await store.create_job(job(user_id=i % 7, guild_id=i % 3, prompt=f"thing {i}"))
        if i % 4:
            await store.finish_job(created.id, seeds=[i], timings={}, result_message_id=10_000 + i)
    await store.close()  # runs PRAGMA optimize, as in production

    from core.history import _SQL_COUNT_RECENT, _SQL_COUNT_WAITING, _SQL_JOB_BY_MESSAGE, _SQL_UNFINISHED

    def plan(sql: str, params: list[object]) -> str:
        with raw(db_path) as conn:
            return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    by_message = plan(_SQL_JOB_BY_MESSAGE, [10_001])
    assert "USING INDEX jobs_by_result_message" in by_message

    for kwargs in (
        dict(user_id=1, guild_id=None, search=None, favorites=False),
        dict(user_id=1, guild_id=None, search="thing", favorites=True),
    ):
        page_sql, count_sql, params = _history_sql(**kwargs)  # type: ignore[arg-type]
        page_plan = plan(page_sql, [*params, 10, 0])
        assert "INDEX jobs_by_user_created" in page_plan, page_plan
        assert "TEMP B-TREE" not in page_plan, page_plan  # the index gives the order
        assert "INDEX jobs_by_user_created" in plan(count_sql, params)

    page_sql, _, params = _history_sql(user_id=None, guild_id=1, search=None, favorites=False)
    assert "INDEX jobs_by_guild_created" in plan(page_sql, [*params, 10, 0])
    assert "INDEX jobs_by_user_created" in plan(_SQL_COUNT_RECENT, [1, 0.0])
    unfinished = plan(_SQL_UNFINISHED, [])
    assert "INDEX jobs_unfinished" in unfinished and "TEMP B-TREE" not in unfinished, unfinished
    assert "INDEX jobs_unfinished_by_user" in plan(_SQL_COUNT_WAITING, [1])


def test_history_module_imports_neither_engine_nor_discord() -> None:
    code = (
        "import sys, core.history; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'discord', 'torch')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


async def test_cancelled_calls_leave_the_store_usable(store: HistoryStore, db_path: Path) -> None:
    """A task cancelled at any await inside a transaction neither wedges the connection nor half-writes."""
    for delay in range(12):
        task = asyncio.create_task(store.create_job(job(prompt=f"cancelled at {delay}")))
        read = asyncio.create_task(store.history(user_id=30))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        read.cancel()
        await asyncio.gather(task, read, return_exceptions=True)
        kept = await store.create_job(job(prompt=f"after {delay}"))
        assert (await store.get_job(kept.id)) == kept
    with raw(db_path) as conn:
        rows = conn.execute("SELECT prompt, status FROM jobs").fetchall()
    assert all(status == "queued" for _, status in rows)
    assert sum(prompt.startswith("after") for prompt, _ in rows) == 12


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


# --------------------------------------------------------------------------- interaction tokens


def stored_tokens(path: Path) -> dict[int, str | None]:
    with raw(path) as conn:
        return dict(conn.execute("SELECT id, interaction_token FROM jobs ORDER BY id"))


async def test_expired_interaction_tokens_are_cleared(db_path: Path) -> None:
    now = 1_000_000.0
    store = await HistoryStore.open(db_path, clock=lambda: now)
    try:
        old = await store.create_job(job(interaction_token="old-token", interaction_expires_at=now - 1))
        live = await store.create_job(job(interaction_token="live-token", interaction_expires_at=now + 600))
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
        token_job = await store.create_job(job(interaction_token="t", interaction_expires_at=clock["now"] + 900))
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
    stale = await store.create_job(job(interaction_token="t", interaction_expires_at=1_000_100.0))
    await store.close()
    store = await HistoryStore.open(db_path, clock=lambda: 1_000_200.0, token_sweep_interval=None)
    await store.close()
    assert stored_tokens(db_path)[stale.id] is None


async def test_migration_3_turns_check_images_into_the_safety_mode(db_path: Path, tmp_path: Path) -> None:
    first_two = tmp_path / "first-two"
    first_two.mkdir()
    for name in ("0001_initial.sql", "0002_token_expiry.sql"):
        shutil.copy(MIGRATIONS_DIR / name, first_two / name)
    store = await HistoryStore.open(db_path, migrations_dir=first_two)
    await store.close()
    with raw(db_path) as conn:
        conn.executemany(
            "INSERT INTO guild_settings VALUES (?, 3, 6, 1, '[]', ?)", [(1, 1), (2, 0)]
        )
    store = await HistoryStore.open(db_path)
    try:
        assert (await store.guild_settings(1)).image_safety == "spoiler"
        assert (await store.guild_settings(2)).image_safety == "off"
        assert (await store.guild_settings(3)).image_safety == "off"
    finally:
        await store.close()
    with raw(db_path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(guild_settings)")]
    assert "check_images" not in columns and "image_safety" in columns
