"""Forgetting a member (``core.forget``, ``HistoryStore.forget_member``): their rows, preferences and the
stored images only they used go, in one transaction; another member's rows, preferences and shared images
stay. The schema is introspected, so a new table with member data cannot be left out of the forgetting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.forget import MEMBER_FOLDERS, forget_member
from core.history import HistoryStore, JobParams
from core.history import sql as history_sql
from core.inputs import InputStore
from tests.core.records import new_job

ME, OTHER = 30, 31
MEMBER_COLUMNS = ("user_id", "member_id", "author_id", "owner_id")


def member_tables(db_path: Path) -> dict[str, list[str]]:
    """Every table with a column that names a member (``user_id`` and the like), with those columns."""
    found: dict[str, list[str]] = {}
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            if table.startswith("sqlite_"):
                continue
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info('{table}')")]
            named = [c for c in columns if c.lower() in MEMBER_COLUMNS or c.lower().endswith("_user_id")]
            if named:
                found[table] = named
    return found


def uncovered(db_path: Path) -> list[str]:
    """Tables holding member data that ``HistoryStore.forget_member`` does not delete from."""
    return sorted(table for table in member_tables(db_path) if table not in history_sql.FORGET_MEMBER)


async def test_every_table_and_folder_with_member_data_is_forgotten(store, db_path):
    tables = member_tables(db_path)
    assert {"jobs", "user_prefs"} <= set(tables)  # the introspection sees what it must
    assert uncovered(db_path) == []
    for table, statement in history_sql.FORGET_MEMBER.items():
        assert statement == f"DELETE FROM {table} WHERE {tables[table][0]} = ?"
    images = InputStore(db_path.parent)
    folders = {name for name, value in vars(images).items() if isinstance(value, Path) and value != images.root}
    assert folders == set(MEMBER_FOLDERS)


async def test_a_new_member_table_not_forgotten_is_caught(store, db_path):
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE gallery (id INTEGER PRIMARY KEY, owner_user_id INTEGER, thumb TEXT)")
    assert uncovered(db_path) == ["gallery"]


def key(n: int) -> str:
    return f"{n:064x}"


async def test_forget_one_member_keeps_the_others_rows_prefs_and_shared_images(store: HistoryStore, tmp_path):
    images = InputStore(tmp_path)
    for n in (1, 2, 3, 4):
        images.put_sync(b"\x89PNG\r\n\x1a\n" + bytes([n]))  # a PNG signature: stored as .png under its hash
    shared, own, mask, others = sorted(p.stem for p in images.inputs.iterdir())[:4]
    mine_final = await store.create_job(new_job(kind="final", count=1, user_id=ME, params=JobParams(init_image=shared)))
    mine_edit = await store.create_job(
        new_job(kind="final", count=1, user_id=ME, params=JobParams(init_image=own, mask_image=mask))
    )
    mine_waiting = await store.create_job(new_job(user_id=ME))
    theirs = await store.create_job(new_job(user_id=OTHER, params=JobParams(init_image=shared, reference_image=others)))
    their_upscale = await store.create_job(
        new_job(kind="final", count=1, user_id=OTHER, params=JobParams(init_result=mine_final.id, upscale="subtle"))
    )
    for job in (mine_final, mine_edit, theirs, their_upscale):
        await store.finish_job(job.id, seeds=[1], timings={})
        images.put_result_sync(job.id, b"png")
    await store.set_favorite(mine_final.id, True)
    await store.update_user_prefs(ME, aspect="16:9")
    await store.update_user_prefs(OTHER, aspect="2:3")

    report = await forget_member(store, images, ME)

    assert (report.jobs, report.prefs) == (3, 1)
    assert await store.history(user_id=ME) == ([], 0)
    assert await store.history(user_id=ME, favorites=True) == ([], 0)
    assert await store.get_job(mine_waiting.id) is None
    assert (await store.user_prefs(ME)).aspect is None
    assert (await store.user_prefs(OTHER)).aspect == "2:3"
    _, total = await store.history(user_id=OTHER)
    assert total == 2
    # Only the member's own images went; the shared upload and the final another member upscales stay.
    assert not images.has_sync(own) and not images.has_sync(mask)
    assert images.has_sync(shared) and images.has_sync(others)
    assert not images.has_result_sync(mine_edit.id)
    assert images.has_result_sync(mine_final.id)
    assert images.has_result_sync(theirs.id) and images.has_result_sync(their_upscale.id)
    assert report.files == 3
    # Forgetting again finds nothing.
    again = await forget_member(store, images, ME)
    assert (again.jobs, again.prefs, again.files) == (0, 0, 0)


async def test_forgetting_is_one_transaction(store: HistoryStore, monkeypatch):
    await store.create_job(new_job(user_id=ME))
    await store.update_user_prefs(ME, aspect="16:9")
    broken = dict(history_sql.FORGET_MEMBER, user_prefs="DELETE FROM no_such_table WHERE user_id = ?")
    monkeypatch.setattr(history_sql, "FORGET_MEMBER", broken)
    with pytest.raises(sqlite3.OperationalError):
        await store.forget_member(ME)
    assert (await store.history(user_id=ME))[1] == 1  # the jobs' delete was rolled back with it
