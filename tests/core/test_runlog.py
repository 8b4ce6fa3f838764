"""Optional Weights & Biases logging of finals: off by default, one warning when unusable, never a crash."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from cogs.ui.layout import Layout
from core.history import JobMode, JobParams, JobRecord
from core.runlog import RunLog, WandbRunLog, open_run_log
from core.settings import BotSettings
from tests.core.doubles import png


def job() -> JobRecord:
    return JobRecord(
        id=7, kind="final", mode=JobMode.FINAL, parent_id=None, parent_index=None, guild_id=10, channel_id=100,
        user_id=1, prompt="a fox, watercolor", negative_prompt="blurry", model="ssd-1b", width=64, height=64,
        steps=None, guidance=None, seed=3, count=1, strength=None, params=JobParams(), status="done", error=None,
        seeds=(3,), timings={}, created_at=0.0, started_at=None, finished_at=None, source_message_id=None,
        interaction_token=None, interaction_expires_at=None, result_channel_id=None, result_message_id=None,
        favorite=False,
    )  # fmt: skip


class FakeRun:
    def __init__(self, fail: bool = False) -> None:
        self.logged: list[dict] = []
        self.fail = fail
        self.finished = False

    def log(self, row: dict) -> None:
        if self.fail:
            raise RuntimeError("network down")
        self.logged.append(row)

    def finish(self) -> None:
        self.finished = True


def fake_wandb(run: FakeRun | None = None, init_error: Exception | None = None) -> SimpleNamespace:
    def init(**kwargs):
        if init_error is not None:
            raise init_error
        return run

    return SimpleNamespace(init=init, Image=lambda image, caption: ("image", image.size, caption))


def test_off_by_default():
    assert BotSettings(token="t").wandb_project is None
    assert BotSettings.from_env({"DISCORD_TOKEN": "t", "WANDB_PROJECT": " finals "}).wandb_project == "finals"
    assert not open_run_log(None).enabled and not open_run_log("").enabled


def test_missing_package_is_one_warning(caplog):
    def load(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    with caplog.at_level(logging.WARNING, logger="core.runlog"):
        run_log = open_run_log("finals", load=load)
    assert type(run_log) is RunLog
    [record] = caplog.records
    assert "wandb package is missing" in record.getMessage() and "[wandb]" in record.getMessage()


def test_no_login_is_one_warning(caplog):
    error = RuntimeError("api_key not configured (no-tty). call wandb.login(key=[your_api_key])\nmore")
    with caplog.at_level(logging.WARNING, logger="core.runlog"):
        run_log = open_run_log("finals", load=lambda name: fake_wandb(init_error=error))
    assert not run_log.enabled
    [record] = caplog.records
    assert "wandb login" in record.getMessage() and "more" not in record.getMessage()


async def test_finals_are_logged_with_their_parameters():
    run = FakeRun()
    run_log = open_run_log("finals", load=lambda name: fake_wandb(run))
    assert isinstance(run_log, WandbRunLog)
    await run_log.log_final(job(), png(64, 64), steps=2, seconds=1.5)
    [row] = run.logged
    assert row["final"] == ("image", (64, 64), "a fox, watercolor")
    assert (row["prompt"], row["seed"], row["model"], row["steps"], row["seconds"]) == (
        "a fox, watercolor",
        3,
        "ssd-1b",
        2,
        1.5,
    )
    assert "user_id" not in row
    run_log.close()
    assert run.finished


async def test_a_failure_later_is_one_warning_then_logging_stops(caplog):
    run = FakeRun(fail=True)
    run_log = open_run_log("finals", load=lambda name: fake_wandb(run))
    with caplog.at_level(logging.WARNING, logger="core.runlog"):
        await run_log.log_final(job(), png(64, 64), steps=2, seconds=1.0)
        run.fail = False
        await run_log.log_final(job(), png(64, 64), steps=2, seconds=1.0)
    assert len(caplog.records) == 1 and "network down" in caplog.records[0].getMessage()
    assert run.logged == []


@pytest.mark.parametrize("kind", ["final", "draft"])
async def test_the_job_service_logs_finals_only(store, kind):
    from core.jobs import JobService
    from tests.core.doubles import FakeEngine, RecordingOrigin, eventually

    class Recording(RunLog):
        enabled = True

        def __init__(self) -> None:
            self.logged: list[tuple[int, int | None]] = []

        async def log_final(self, job, png, *, steps, seconds):
            self.logged.append((job.id, steps))

    engine = FakeEngine()
    recording = Recording()
    service = JobService(
        client=None,  # type: ignore[arg-type]
        store=store,
        engine=engine,
        settings=BotSettings.model_construct(  # model_construct: faster than a user may set, unchecked
            token=SecretStr("t"), progress_interval=0.01, queue_update_interval=0.02
        ),
        controls=Layout(),
        run_log=recording,
    )
    try:
        origin = RecordingOrigin()
        made = service.final if kind == "final" else service.imagine
        record = await made(origin, prompt="a fox", seed=1)
        engine.finish(record.id)
        await eventually(lambda: origin.deliveries[0].posts)
        await eventually(lambda: service.active() == {})
        assert recording.logged == ([(record.id, 4)] if kind == "final" else [])
    finally:
        await service.shutdown(0.0)
