"""The main scenarios once more with ``ENGINE_BACKEND=ray``: the real bot against the real
``python -m engine serve --preset tiny`` (its own local Ray cluster, 127.0.0.1, a free port, the token it makes up and
prints in the bot's line; SIGTERM stops it with exit status 0), making photo-sized images
(``ENGINE_TINY_DETAIL=photo``: PNGs as large as real ones cross the cluster's wire and the uploads).

/imagine posts 4 decodable PNG drafts of the right size, 🔁 rerolls with new seeds, U2 makes the final
of draft 2, and a bot restarted with a final in flight delivers every job exactly once while the
cluster keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import free_port
from tests.e2e.support import (
    BASE_ENV,
    RunningBot,
    bot_message_ids,
    new_user,
    reply_with_files,
    result_of,
)
from tests.fakediscord import FakeDiscord
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.asyncio(loop_scope="session"),
]
OWN_BOT = True  # not shared with other modules (tests/e2e/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
REROLL = "🔁"
SERVE_READY_S = 240.0  # Ray's start and the tiny models loading in two replicas, on a busy 2-core CPU


@dataclass
class ServedEngine:
    url: str
    token: str
    process: asyncio.subprocess.Process


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(tiny_cache_dir: Path) -> AsyncIterator[ServedEngine]:
    """``python -m engine serve --preset tiny`` with a Ray cluster of its own, for the whole module.

    Stopped with SIGTERM at the end (Serve and its Ray shut down, exit 0); its process group is
    killed if anything of it is left, so no raylet or replica outlives the module.
    """
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[ray]')")
    # No ENGINE_TOKEN: serve makes one up and prints it in the bot's line, as an owner's first run does.
    port = free_port()
    # ENGINE_TINY_DETAIL=photo: every image is as large as a real one (1.7 MB for a final), on the wire too.
    env = {**os.environ, "ENGINE_CACHE_DIR": str(tiny_cache_dir), "ENGINE_TOKEN": "", "RAY_ADDRESS": ""}
    env["ENGINE_TINY_DETAIL"] = "photo"
    command = [sys.executable, "-m", "engine", "serve", "--preset", "tiny", "--device", "cpu"]
    command += ["--address", "local", "--port", str(port)]  # "local": never the tests' own cluster
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group: everything it starts can be cleaned up
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), SERVE_READY_S)).decode()
        match = re.fullmatch(r"ENGINE_BACKEND=ray ENGINE_URL=(\S+) ENGINE_TOKEN=(\S+)\n", line)
        assert match, f"serve printed {line!r}"
        url, token = match.groups()
        assert url == f"http://127.0.0.1:{port}" and len(token) >= 24  # loopback, a token made up for us
        yield ServedEngine(url, token, process)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 90) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of its Ray is still there


@pytest.fixture(scope="module")
def bot_env(served: ServedEngine) -> dict[str, str]:
    # 4 final steps: U2 (strength 0.5) runs 2 of them; a /final runs long enough to be caught running.
    return {
        **BASE_ENV,
        "FINAL_STEPS": "4",
        "ENGINE_BACKEND": "ray",
        "ENGINE_URL": served.url,
        "ENGINE_TOKEN": served.token,
    }


# PNG bytes of real SDXL images (ENGINE_TINY_DETAIL=photo makes the tiny preset's as large).
REAL_PNG_BYTES = {(512, 512): 300_000, (1024, 1024): 1_200_000}


def assert_pngs(message, size: tuple[int, int], count: int) -> None:
    assert len(message.attachments) == count, [a.filename for a in message.attachments]
    for attachment, image in zip(message.attachments, message.images(), strict=True):
        assert attachment.filename.endswith(".png") and image.format == "PNG", (attachment.filename, image.format)
        assert image.size == size, (attachment.filename, image.size)
        assert attachment.size >= REAL_PNG_BYTES[size], (attachment.filename, attachment.size)


async def test_imagine_reroll_and_u2_through_the_cluster(bot: RunningBot) -> None:
    fake = bot.fake
    author = new_user(fake, "cluster-author")
    interaction = await fake.slash("imagine", {"prompt": "a castle on a hill", "seed": 500}, user=author)
    assert await interaction.wait_callback(timeout=3.0) == DEFERRED_CHANNEL_MESSAGE
    drafts = await result_of(interaction, files=4)
    assert_pngs(drafts, (512, 512), 4)
    job = await bot.finished_job_for(drafts)
    assert job["status"] == "done" and job["seeds"] == [500, 501, 502, 503]
    assert {"cluster", "overhead"} <= set(job["timings"]), job["timings"]  # timed in flight to the cluster
    await fake.wait_for(lambda: fake.bot_user.id in drafts.reactions.get(REROLL, []), 10, "the bot's 🔁")

    reroller = new_user(fake, "cluster-reroller")
    before = bot_message_ids(fake)
    await fake.react(drafts, REROLL, reroller)
    reply = await reply_with_files(fake, drafts, files=4, exclude=before)
    assert_pngs(reply, (512, 512), 4)
    rerolled = await bot.finished_job_for(reply)
    assert rerolled["status"] == "done" and rerolled["parent_id"] == job["id"]
    assert set(rerolled["seeds"]).isdisjoint(job["seeds"]), rerolled["seeds"]

    click = await fake.click(drafts, f"job:{job['id']}:u2", author)
    assert await click.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    final = await result_of(click, files=1)
    assert_pngs(final, (1024, 1024), 1)
    final_job = await bot.finished_job_for(final)
    assert final_job["status"] == "done" and final_job["kind"] == "final"
    assert (final_job["parent_id"], final_job["parent_index"]) == (job["id"], 1)
    assert final_job["seeds"] == [501]
    assert "Seed: 501" in final.images()[0].info.get("parameters", "")


async def test_a_bot_restart_with_a_final_in_flight_delivers_every_job_once(
    bot_env: dict[str, str], tiny_cache_dir: Path, tmp_path: Path
) -> None:
    from tests.e2e.support import start_bot

    database = tmp_path / "history.sqlite3"
    async with FakeDiscord() as fake:  # a Discord of its own: the module's bot never sees these jobs
        first = await start_bot(fake, tmp_path / "first", tiny_cache_dir, bot_env, database_path=database)
        second: RunningBot | None = None
        try:
            users = [new_user(fake, f"cluster-waiter{n}") for n in range(3)]
            finals = []
            for n, user in enumerate(users):
                interaction = await fake.slash("final", {"prompt": f"cluster restart {n}", "seed": 100 + n}, user=user)
                assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
                finals.append(interaction)
            where = "prompt LIKE 'cluster restart %'"
            await fake.wait_for(
                lambda: sorted(r["status"] for r in first.jobs(where)) == ["queued", "queued", "running"],
                60,
                "one final running in the cluster and two waiting",
            )
            assert await first.process.terminate(timeout=60) == 0, first.process.log_tail(40)
            rows = first.jobs(where)
            assert {row["status"] for row in rows} <= {"done", "queued"}, [(r["id"], r["status"]) for r in rows]
            assert sum(row["status"] == "queued" for row in rows) >= 2, [(r["id"], r["status"]) for r in rows]
            first.assert_clean_log()

            second = await start_bot(fake, tmp_path / "second", tiny_cache_dir, bot_env, database_path=database)
            for n, interaction in enumerate(finals):
                message = await result_of(interaction, files=1)
                assert_pngs(message, (1024, 1024), 1)
                job = await second.finished_job_for(message)
                assert job["status"] == "done" and job["seeds"] == [100 + n]
                assert "cluster" in job["timings"], job["timings"]
                uploads = [c for c in fake.calls_to("PATCH") if interaction.token in c.path and c.files]
                uploads += [
                    c
                    for c in fake.calls_to("POST", r"^/channels/\d+/messages$")
                    if c.files and f"cluster restart {n}" in str((c.json or {}).get("content"))
                ]
                assert len(uploads) == 1, f"job {n} was delivered {len(uploads)} times"
            assert len(second.jobs(where)) == 3
            assert await second.process.terminate(timeout=60) == 0
            second.assert_clean_log()
        finally:
            for running in (first, second):
                if running is not None and running.process.running:
                    await running.process.kill()
