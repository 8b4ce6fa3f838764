"""The store's SQL (core/history/sql.py): searches match literally, lookups use the indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.history import HistoryStore, JobParams, sql
from core.history.sql import escape_like
from tests.core.history.sqlite import raw, tables
from tests.core.records import new_job

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
        await store.create_job(new_job(prompt=prompt))
    page, total = await store.history(user_id=30, search=search, limit=50)
    assert sorted(j.prompt for j in page) == sorted(expected)
    assert total == len(expected)
    assert "jobs" in tables(db_path)


def test_escape_like() -> None:
    assert escape_like("a%b_c\\d") == "a\\%b\\_c\\\\d"
    assert escape_like("plain") == "plain"


async def test_lookups_use_indexes(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    for i in range(300):
        created = await store.create_job(new_job(user_id=i % 7, guild_id=i % 3, prompt=f"thing {i}"))
        if i % 4:
            await store.finish_job(created.id, seeds=[i], timings={}, result_message_id=10_000 + i)
    await store.close()  # runs PRAGMA optimize, as in production

    def plan(sql: str, params: list[object]) -> str:
        with raw(db_path) as conn:
            return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    by_message = plan(sql.JOB_BY_MESSAGE, [10_001])
    assert "USING INDEX jobs_by_result_message" in by_message

    for kwargs in (
        dict(user_id=1, guild_id=None, search=None, favorites=False),
        dict(user_id=1, guild_id=None, search="thing", favorites=True),
    ):
        page_sql, count_sql, params = sql.history_sql(**kwargs)  # type: ignore[arg-type]
        page_plan = plan(page_sql, [*params, 10, 0])
        assert "INDEX jobs_by_user_created" in page_plan, page_plan
        assert "TEMP B-TREE" not in page_plan, page_plan  # the index gives the order
        assert "INDEX jobs_by_user_created" in plan(count_sql, params)

    page_sql, _, params = sql.history_sql(user_id=None, guild_id=1, search=None, favorites=False)
    assert "INDEX jobs_by_guild_created" in plan(page_sql, [*params, 10, 0])
    assert "INDEX jobs_by_user_created" in plan(sql.COUNT_RECENT, [1, 0.0])
    unfinished = plan(sql.UNFINISHED, [])
    assert "INDEX jobs_unfinished" in unfinished and "TEMP B-TREE" not in unfinished, unfinished


async def test_image_in_use_looks_up_each_key_in_its_index(db_path: Path) -> None:
    store = await HistoryStore.open(db_path)
    for i in range(300):
        key = f"{i:064x}"
        params = [JobParams(), JobParams(init_image=key), JobParams(init_image=key, mask_image=key[::-1]),
                  JobParams(reference_image=key)][i % 4]
        await store.create_job(new_job(prompt=f"thing {i}", params=params))
    assert await store.image_in_use(f"{3:064x}") is True  # a reference
    assert await store.image_in_use(f"{2:064x}"[::-1]) is True  # a mask
    await store.close()  # runs PRAGMA optimize, as in production
    with raw(db_path) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql.IMAGE_IN_USE, ["a" * 64] * 3 + ["[]"])
        found = " | ".join(r[3] for r in rows)
    for index in ("jobs_by_init_image", "jobs_by_mask_image", "jobs_by_reference_image"):
        assert f"SEARCH jobs USING INDEX {index}" in found, found
    assert "SCAN jobs" not in found, found  # no scan of every job
