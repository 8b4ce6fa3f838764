"""A history of 10,000 jobs, as a busy server's database holds after months: /history pages, the restart's
queries and the lookups behind buttons and reactions give the right rows, each through an index (the query plans
are checked, not the time, which a loaded CI machine would make meaningless)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from core.history import HistoryStore, JobParams, sql
from tests.core.history.sqlite import raw
from tests.core.records import new_job

N = 10_000
START = 1_700_000_000.0
USERS, GUILDS = 40, 4
WAITING = 200  # queued when the bot stopped: the newest rows
RUNNING = (N - WAITING - 1, N - WAITING - 2, N - WAITING - 3)


def user_of(i: int) -> int:
    return 1000 + i % USERS


def guild_of(i: int) -> int | None:
    return None if i % 5 == 4 else i % 5  # one job in five in DMs


def channel_of(i: int) -> int:
    return 500 + i % 3 if guild_of(i) is not None else 900 + user_of(i)


def status_of(i: int) -> str:
    if i >= N - WAITING:
        return "queued"
    if i in RUNNING:
        return "running"
    return "failed" if i % 20 == 7 else "cancelled" if i % 50 == 9 else "done"


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """The database file with N jobs, built through the store's own statements in one transaction (ids 1..N:
    row ``i`` is job ``i + 1``), then closed as production closes it (PRAGMA optimize)."""
    path = tmp_path_factory.mktemp("big") / "history.db"
    asyncio.run(_fill(path))
    return path


async def _fill(path: Path) -> None:
    store = await HistoryStore.open(path, token_sweep_interval=None)
    rows = []
    for i in range(N):
        job = new_job(
            user_id=user_of(i), guild_id=guild_of(i), channel_id=channel_of(i), prompt=f"a red fox number {i}",
            seed=i, params=JobParams(init_image=f"{i:064x}") if i % 10 == 3 else JobParams(),
            interaction_token=f"token-{i}" if i >= N - 500 else None,
            interaction_expires_at=START + i + 900 if i >= N - 500 else None,
        )
        values = job.columns()
        values.update(params=sql.dumps(values["params"]), prompt_folded=job.prompt.casefold(), created_at=START + i)
        rows.append(values)
    async with store._db.write() as conn:
        await conn.executemany(sql.INSERT_JOB, rows)
        finished = [i for i in range(N) if status_of(i) == "done"]
        done = [(f"[{i}]", "{}", START + i + 5, 500, 10**6 + i, 1, i + 1) for i in finished]
        await conn.executemany(sql.FINISH, done)
        await conn.executemany(sql.FAIL, [("boom", START + i, i + 1) for i in range(N) if status_of(i) == "failed"])
        await conn.executemany(sql.CANCEL, [(START + i, i + 1) for i in range(N) if status_of(i) == "cancelled"])
        await conn.executemany(sql.MARK_RUNNING, [(START + i, i + 1) for i in RUNNING])
        await conn.executemany(sql.SET_FAVORITE, [(1, i + 1) for i in range(0, N, 97)])
    await store.close()


@pytest.fixture
async def store(big: Path):
    store = await HistoryStore.open(big, token_sweep_interval=None)
    yield store
    await store.close()


async def test_history_pages_walk_every_job_of_a_member_newest_first(store):
    user = user_of(7)
    mine = [i + 1 for i in reversed(range(N)) if user_of(i) == user]
    seen, offset = [], 0
    while True:
        page, total = await store.history(user_id=user, limit=10, offset=offset)
        assert total == len(mine) == N // USERS
        if not page:
            break
        seen += [job.id for job in page]
        offset += 10
    assert seen == mine  # every job once, newest first
    page, total = await store.history(user_id=user, limit=10, offset=len(mine) - 3)
    assert [j.id for j in page] == mine[-3:] and total == len(mine)


async def test_history_filters_at_size(store):
    user, guild = user_of(3), 3
    in_guild = [i + 1 for i in reversed(range(N)) if guild_of(i) == guild]
    page, total = await store.history(user_id=None, guild_id=guild, limit=25)
    assert total == len(in_guild) and [j.id for j in page] == in_guild[:25]
    channel = channel_of(3)
    page, total = await store.history(user_id=None, guild_id=guild, channel_ids=[channel], limit=25)
    assert total == sum(1 for i in range(N) if guild_of(i) == guild and channel_of(i) == channel)
    assert all(j.channel_id == channel for j in page)
    favorites = [i + 1 for i in reversed(range(0, N, 97)) if user_of(i) == user]
    page, total = await store.history(user_id=user, favorites=True, limit=50)
    assert [j.id for j in page] == favorites and total == len(favorites)
    page, total = await store.history(user_id=user, search="NUMBER 99", limit=50)
    assert {j.prompt for j in page} == {f"a red fox number {i}" for i in range(N) if user_of(i) == user
                                       and "number 99" in f"a red fox number {i}"}


async def test_the_restart_finds_the_waiting_jobs_in_order(store):
    unfinished = await store.unfinished_jobs()
    want = sorted([i + 1 for i in range(N - WAITING, N)] + [i + 1 for i in RUNNING])
    assert [j.id for j in unfinished] == want
    assert sum(j.status == "running" for j in unfinished) == len(RUNNING)
    assert await store.requeue(RUNNING[0] + 1) and (await store.get_job(RUNNING[0] + 1)).status == "queued"
    assert (await store.job_by_message(10**6 + 5)).id == 6
    assert await store.image_in_use(f"{13:064x}") and not await store.image_in_use(f"{17:064x}")
    assert await store.count_recent(user_of(0), START + N - USERS * 3) == 3


FULL_SCAN = re.compile(r"\bSCAN jobs\b(?! USING)")  # every row of the table (a SCAN of an index is its rows only)


def plan_of(path: Path, query: str, params) -> str:
    with raw(path) as conn:
        return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + query, params))


HISTORY_CASES = [
    dict(user_id=1, guild_id=None, search=None, favorites=False),
    dict(user_id=1, guild_id=2, search=None, favorites=False),
    dict(user_id=1, guild_id=None, search="fox", favorites=True),
    dict(user_id=None, guild_id=2, search=None, favorites=False),
    dict(user_id=None, guild_id=2, search="fox", favorites=False, channel_ids=[501, 502]),
]


@pytest.mark.parametrize("case", HISTORY_CASES, ids=lambda c: "-".join(k for k, v in c.items() if v))
def test_history_queries_use_an_index_in_order(big, case):
    page_sql, count_sql, params = sql.history_sql(**case)
    page = plan_of(big, page_sql, [*params, 10, 0])
    assert not FULL_SCAN.search(page) and "TEMP B-TREE" not in page, page
    count = plan_of(big, count_sql, params)
    assert not FULL_SCAN.search(count), count


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("UNFINISHED", []),
        ("JOB_BY_ID", [5]),
        ("JOB_BY_MESSAGE", [10**6 + 5]),
        ("COUNT_RECENT", [1000, START]),
        ("IMAGE_IN_USE", ["a" * 64] * 3 + ["[]"]),
        ("CLEAR_EXPIRED_TOKENS", [START]),
        ("REQUEUE", [5]),
        ("MARK_RUNNING", [START, 5]),
        ("FINISH", [[1], "{}", START, 1, 2, 1, 5]),
    ],
)
def test_hot_queries_use_an_index(big, name, params):
    assert FULL_SCAN.search(plan_of(big, "SELECT id FROM jobs WHERE prompt = ?", ["x"]))  # what a scan reads as
    found = plan_of(big, getattr(sql, name), [p if not isinstance(p, list) else str(p) for p in params])
    assert not FULL_SCAN.search(found) and "TEMP B-TREE" not in found, found
