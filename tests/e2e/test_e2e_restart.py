"""Restart end to end: SIGTERM with one job running and two waiting, start again -> all three delivered once,
and the buttons of a message posted before the restart still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import BASE_ENV, RunningBot, new_user, result_of, start_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
OWN_BOT = True  # not shared with other modules (tests/e2e/conftest.py)

# 4 steps at 1024 px: a final runs long enough to be caught running.
ENV = {**BASE_ENV, "FINAL_STEPS": "4"}
UNFINISHED = ("queued", "running")


async def stop(bot: RunningBot) -> int:
    return await bot.process.terminate(timeout=60)


async def test_sigterm_with_jobs_in_flight_then_restart_delivers_them_all(
    fake: FakeDiscord, tiny_cache_dir: Path, tmp_path: Path
) -> None:
    database = tmp_path / "history.sqlite3"
    first = await start_bot(fake, tmp_path / "first", tiny_cache_dir, ENV, database_path=database)
    second: RunningBot | None = None
    try:
        author = new_user(fake, "author")
        before = await fake.slash("imagine", {"prompt": "posted before the restart", "seed": 7}, user=author)
        old_message = await result_of(before, files=4)
        old_job = await first.finished_job_for(old_message)

        users = [new_user(fake, f"waiter{n}") for n in range(3)]
        finals = []
        for n, user in enumerate(users):
            interaction = await fake.slash("final", {"prompt": f"restart job {n}", "seed": 100 + n}, user=user)
            assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
            finals.append(interaction)
        where = "prompt LIKE 'restart job %'"

        def one_running_two_waiting() -> bool:
            statuses = sorted(row["status"] for row in first.jobs(where))
            return statuses == ["queued", "queued", "running"]

        await fake.wait_for(one_running_two_waiting, 30, "one final running and two waiting")
        assert all(not interaction.original.attachments for interaction in finals)  # type: ignore[union-attr]

        code = await stop(first)
        assert code == 0, f"SIGTERM exit code {code}\n{first.process.log_tail(40)}"
        rows = first.jobs(where)
        assert len(rows) == 3, rows
        assert {row["status"] for row in rows} <= {"done", "queued"}, [(r["id"], r["status"], r["error"]) for r in rows]
        assert sum(row["status"] == "queued" for row in rows) >= 2, [(r["id"], r["status"]) for r in rows]
        first.assert_clean_log()

        second = await start_bot(fake, tmp_path / "second", tiny_cache_dir, ENV, database_path=database)
        for n, interaction in enumerate(finals):
            message = await result_of(interaction, files=1)
            assert message.images()[0].size == (1024, 1024)
            assert f"restart job {n}" in message.content
            job = await second.finished_job_for(message)
            assert job["status"] == "done" and job["seeds"] == [100 + n]
            uploads = [call for call in fake.calls_to("PATCH") if interaction.token in call.path and call.files]
            uploads += [call for call in fake.calls_to("POST", r"^/channels/\d+/messages$")
                        if call.files and f"restart job {n}" in str((call.json or {}).get("content"))]
            assert len(uploads) == 1, f"job {n} was delivered {len(uploads)} times: {uploads}"
        assert len(second.jobs(where)) == 3

        # A button of the message posted before the restart: V1 rebuilds draft 1 from the database.
        click = await fake.click(old_message, f"job:{old_job['id']}:v1", author)
        assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
        variations = await result_of(click, files=4)
        job = await second.finished_job_for(variations)
        assert job["status"] == "done" and (job["parent_id"], job["parent_index"]) == (old_job["id"], 0)

        assert await stop(second) == 0
        second.assert_clean_log()
    finally:
        for bot in (first, second):
            if bot is not None and bot.process.running:
                await bot.process.kill()
    errors = fake.take_errors()
    assert not errors, errors
