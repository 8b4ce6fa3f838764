"""Crashes end to end: the bot killed with SIGKILL right after answering several commands, then while a
job runs, then right after a first result is posted; every accepted job arrives exactly once in the end
(one message with its files, uploaded once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import BASE_ENV, RunningBot, new_user, result_of, start_bot
from tests.fakediscord import FakeDiscord
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
OWN_BOT = True  # not shared with other modules (tests/e2e/conftest.py)

JOBS = 5


def result_messages(fake: FakeDiscord, prompt: str) -> list:
    """Every message of the bot (deleted ones too) that carries result files for ``prompt``."""
    return [
        message
        for message in fake.messages(author=fake.world.bot, include_deleted=True)
        if message.attachments and prompt in message.content
    ]


async def test_sigkill_after_the_acks_and_after_a_first_result_loses_nothing_and_doubles_nothing(
    fake: FakeDiscord, tiny_cache_dir: Path, tmp_path: Path
) -> None:
    database = tmp_path / "history.sqlite3"
    bots: list[RunningBot] = []
    try:
        bots.append(await start_bot(fake, tmp_path / "first", tiny_cache_dir, BASE_ENV, database_path=database))
        prompts = [f"crash job {n}" for n in range(JOBS)]
        interactions = []
        for n, prompt in enumerate(prompts):
            user = new_user(fake, f"crasher{n}")
            interactions.append(await fake.slash("imagine", {"prompt": prompt, "seed": 10 + n}, user=user))
        for interaction in interactions:
            assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
        await bots[0].process.kill()  # the moment that used to lose every job: just answered
        assert len(bots[0].jobs("prompt LIKE 'crash job %'")) == JOBS

        bots.append(await start_bot(fake, tmp_path / "second", tiny_cache_dir, BASE_ENV, database_path=database))
        await fake.wait_for(lambda: bots[1].jobs("status = 'running'"), 120, "a job running")
        await bots[1].process.kill()  # while a job runs

        bots.append(await start_bot(fake, tmp_path / "third", tiny_cache_dir, BASE_ENV, database_path=database))
        await fake.wait_for(lambda: any(result_messages(fake, p) for p in prompts), 120, "a first result")
        await bots[2].process.kill()  # right after a first result is posted

        bots.append(await start_bot(fake, tmp_path / "fourth", tiny_cache_dir, BASE_ENV, database_path=database))
        for prompt, interaction in zip(prompts, interactions, strict=True):
            message = await result_of(interaction, files=4)
            assert prompt in message.content
        for prompt in prompts:
            await fake.wait_for(
                lambda p=prompt: bots[3].jobs("prompt = ? AND status = 'done'", (p,)), 60, f"{prompt} done"
            )
            found = result_messages(fake, prompt)
            assert len(found) == 1, f"{prompt!r} arrived {len(found)} times"
        for prompt, interaction in zip(prompts, interactions, strict=True):
            uploads = [call for call in fake.calls_to("PATCH") if interaction.token in call.path and call.files]
            uploads += [call for call in fake.calls_to("POST", r"^/channels/\d+/messages$")
                        if call.files and prompt in str((call.json or {}).get("content"))]
            assert len(uploads) == 1, f"{prompt!r} was uploaded {len(uploads)} times"
        assert await bots[3].process.terminate(timeout=60) == 0
    finally:
        for bot in bots:
            if bot.process.running:
                await bot.process.kill()
