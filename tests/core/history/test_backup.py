"""Backups of the history: a copy before the first pending migration, and ``backup_all`` of a live database
(WAL and all) with its images, restored into a fresh folder that serves history again."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from core.history import MIGRATIONS_DIR, HistoryStore
from core.history.backup import BACKUPS_DIR, backup_all
from core.inputs import InputStore
from tests.core.history.sqlite import raw, user_version
from tests.core.records import new_job

LATEST = len(list(MIGRATIONS_DIR.glob("*.sql")))


def first_migrations(tmp_path: Path, count: int) -> Path:
    directory = tmp_path / f"first-{count}"
    directory.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql"))[:count]:
        shutil.copy(path, directory / path.name)
    return directory


async def test_a_database_at_an_older_migration_is_copied_before_it_is_migrated(db_path: Path, tmp_path: Path):
    older = LATEST - 1
    store = await HistoryStore.open(db_path, migrations_dir=first_migrations(tmp_path, older))
    try:
        jobs = [await store.create_job(new_job(prompt=f"made before the upgrade {i}")) for i in range(3)]
    finally:
        await store.close()
    assert not (db_path.parent / BACKUPS_DIR).exists()

    store = await HistoryStore.open(db_path)
    await store.close()
    assert user_version(db_path) == LATEST
    copies = list((db_path.parent / BACKUPS_DIR).iterdir())
    next_migration = sorted(MIGRATIONS_DIR.glob("*.sql"))[older].stem
    assert len(copies) == 1 and copies[0].name.startswith(f"{db_path.stem}-")
    assert copies[0].name.endswith(f"-before-{next_migration}.sqlite3")
    assert user_version(copies[0]) == older  # the copy is the database as it was, rows and all
    with raw(copies[0]) as conn:
        assert [row[0] for row in conn.execute("SELECT prompt FROM jobs ORDER BY id")] == [j.prompt for j in jobs]

    store = await HistoryStore.open(db_path)  # up to date: nothing pending, no second copy
    await store.close()
    assert len(list((db_path.parent / BACKUPS_DIR).iterdir())) == 1


async def test_a_brand_new_database_gets_no_backup(db_path: Path):
    store = await HistoryStore.open(db_path)
    await store.close()
    assert user_version(db_path) == LATEST and not (db_path.parent / BACKUPS_DIR).exists()


async def test_a_backup_of_a_live_database_restores_into_a_fresh_folder_that_serves_history(tmp_path: Path):
    live = tmp_path / "data" / "history.sqlite3"
    store = await HistoryStore.open(live)
    images = InputStore.beside(live)
    try:
        made = [await store.create_job(new_job(prompt=f"harbour {i}", user_id=30)) for i in range(5)]
        key = await asyncio.to_thread(images.put_sync, b"\x89PNG not really")
        (images.results / "1").mkdir(parents=True)
        (images.results / "1" / "final.png").write_bytes(b"result bytes")
        assert await asyncio.to_thread(os.path.getsize, f"{live}-wal") > 0  # the rows are in the WAL
        lines = await asyncio.to_thread(backup_all, live, tmp_path / "copy")  # while the store is open
        await store.create_job(new_job(prompt="after the backup", user_id=30))
    finally:
        await store.close()
    assert len(lines) == 3 and "1 images" in lines[1] and "1 images" in lines[2]

    restored = tmp_path / "fresh" / "history.sqlite3"  # a fresh machine: the copied folder, moved
    shutil.copytree(tmp_path / "copy", restored.parent)
    store = await HistoryStore.open(restored)
    try:
        jobs, total = await store.history(user_id=30)
        assert total == 5 and sorted(j.prompt for j in jobs) == sorted(j.prompt for j in made)
    finally:
        await store.close()
    assert (InputStore.beside(restored).inputs / f"{key}.png").read_bytes() == b"\x89PNG not really"
    assert (restored.parent / "results" / "1" / "final.png").read_bytes() == b"result bytes"
    assert not (restored.parent / BACKUPS_DIR).exists()  # at the latest version: no migration, no copy
