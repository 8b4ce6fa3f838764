"""The schema runner (core/history/migrations.py): numbered files, one transaction each, never half applied."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest

from core.history import MIGRATIONS_DIR, GuildStyle, HistoryStore, JobParams, MigrationError, load_migrations
from core.inputs import InputStore
from core.jobs.rows import rebuild_request
from core.render import describe
from engine.api import FinalRequest, ImageInit
from tests.core.doubles import png
from tests.core.history.sqlite import raw, tables, user_version
from tests.core.records import new_job

LATEST = len(list(MIGRATIONS_DIR.glob("*.sql")))


def migrations_copy(tmp_path: Path, extra: dict[str, str]) -> Path:
    """The real migrations plus ``extra`` files (name -> SQL) in a fresh directory."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    for name, sql in extra.items():
        (directory / name).write_text(textwrap.dedent(sql), encoding="utf-8")
    return directory


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
    created = await store.create_job(new_job())
    await store.close()
    for _ in range(2):
        store = await HistoryStore.open(db_path)
        assert store.schema_version == LATEST
        assert await store.get_job(created.id) == created
        await store.close()
    assert user_version(db_path) == LATEST


async def test_failing_migration_leaves_version_and_data_untouched(db_path: Path, tmp_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    created = await store.create_job(new_job(prompt="keep me"))
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
        created = await store.create_job(new_job())
    finally:
        await store.close()
    with raw(db_path) as conn:
        assert conn.execute("SELECT job_id FROM audit").fetchall() == [(created.id,)]


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


async def test_migration_4_adds_styles_to_a_version_3_database_and_keeps_its_rows(db_path: Path, tmp_path: Path):
    first_three = tmp_path / "first-three"
    first_three.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-3]_*.sql")):
        shutil.copy(path, first_three / path.name)
    store = await HistoryStore.open(db_path, migrations_dir=first_three)
    try:
        assert store.schema_version == 3
        created = await store.create_job(new_job(prompt="made before styles"))
        await store.update_guild_settings(10, blocked_words=("gore",), image_safety="block")
        await store.update_user_prefs(30, style_suffix="watercolor")
    finally:
        await store.close()
    assert "guild_styles" not in tables(db_path)

    store = await HistoryStore.open(db_path)
    try:
        assert store.schema_version == LATEST
        assert await store.get_job(created.id) == created
        settings = await store.guild_settings(10)
        assert (settings.blocked_words, settings.image_safety) == (("gore",), "block")
        assert (await store.user_prefs(30)).style_suffix == "watercolor"
        assert await store.guild_styles(10) == []
        await store.put_guild_style(GuildStyle(10, "noir", "black and white", "color"))
        assert await store.guild_styles(10) == [GuildStyle(10, "noir", "black and white", "color")]
    finally:
        await store.close()


async def test_migration_5_indexes_the_image_keys_of_a_version_4_database(db_path: Path, tmp_path: Path):
    first_four = tmp_path / "first-four"
    first_four.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(path, first_four / path.name)
    store = await HistoryStore.open(db_path, migrations_dir=first_four)
    try:
        created = await store.create_job(new_job(params=JobParams(reference_image="d" * 64)))
    finally:
        await store.close()
    store = await HistoryStore.open(db_path)
    try:
        assert store.schema_version == LATEST
        assert await store.get_job(created.id) == created
        assert await store.image_in_use("d" * 64) is True
    finally:
        await store.close()
    with raw(db_path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_by_init_image", "jobs_by_mask_image", "jobs_by_reference_image"} <= names


async def test_migration_6_gives_a_stored_vary_its_own_mode_and_it_rebuilds_the_same(db_path: Path, tmp_path: Path):
    first_five = tmp_path / "first-five"
    first_five.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-5]_*.sql")):
        shutil.copy(path, first_five / path.name)
    inputs = InputStore(tmp_path / "data")
    store = await HistoryStore.open(db_path, migrations_dir=first_five)
    try:
        final = await store.create_job(new_job(kind="final", mode="final", model="sdxl", count=1))
        await inputs.put_result(final.id, png(512, 512))
        # As the bot stored them before: V2 of a draft and Vary (subtle) of a final, both "variation".
        v2 = await store.create_job(new_job(mode="variation", parent_id=final.id, parent_index=1, strength=0.5))
        vary = await store.create_job(new_job(
            kind="final", mode="variation", model="sdxl", count=1, parent_id=final.id, strength=0.35, seed=77,
            params=JobParams(vary="subtle", init_result=final.id),
        ))
        asked = await rebuild_request(store, vary, inputs)
    finally:
        await store.close()
    told = f"Subtle variation of job #{final.id} · seed `77` · sdxl · 512×512 · job #{vary.id}"  # as before
    assert asked == FinalRequest(
        prompt=vary.prompt, seed=77, width=512, height=512, model="sdxl", init=ImageInit(png(512, 512)), strength=0.35
    )

    store = await HistoryStore.open(db_path)
    try:
        assert store.schema_version == LATEST
        migrated = await store.get_job(vary.id)
        assert migrated.mode == "vary" and migrated == dataclasses.replace(vary, mode="vary")
        assert (await store.get_job(v2.id)).mode == "variation"  # V1-V4 keep theirs
        assert describe(migrated) == told
        assert await rebuild_request(store, migrated, inputs) == asked
    finally:
        await store.close()
