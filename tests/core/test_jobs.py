"""The job service: row before engine, limits, bad input, delivery, failures, cancel, restart, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from pydantic import SecretStr

from core.delivery import DeliveryError
from core.history import HistoryStore, NewJob
from core.jobs import JobService, RebuildError, rebuild_request, request_for
from core.settings import BotSettings
from engine.api import MAX_SEED, DraftInit, DraftRequest, FinalRequest
from tests.core.doubles import FakeEngine, RecordingDelivery, RecordingOrigin, eventually


@pytest.fixture
async def store(tmp_path):
    store = await HistoryStore.open(tmp_path / "history.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def engine(tmp_path):
    return FakeEngine(str(tmp_path / "history.sqlite3"))


def make_service(store, engine, **kwargs) -> JobService:
    kwargs.setdefault("pace_channels", False)  # status edits as fast as the settings say (pacing has tests of its own)
    return JobService(
        client=None,  # type: ignore[arg-type]  (only restart deliveries use it; the tests inject those)
        store=store,
        engine=engine,
        settings=BotSettings.model_construct(  # model_construct: faster than a user may set, unchecked
            token=SecretStr("test"), progress_interval=0.01, queue_update_interval=0.02
        ),
        **kwargs,
    )


@pytest.fixture
async def service(store, engine):
    service = make_service(store, engine)
    yield service
    await service.shutdown(0.0)


# --------------------------------------------------------------------------- accepting


async def test_row_is_written_before_the_engine_gets_the_job(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox in snow", seed=42)
    assert job is not None and origin.refusals == []
    submitted = engine.item(job.id)
    assert submitted.row_status == "queued"  # read through a second connection at submit time
    assert submitted.user == "1" and submitted.job_id == str(job.id)
    assert submitted.request == DraftRequest(
        prompt="a red fox in snow", seed=42, width=512, height=512, count=4, steps=1
    )
    row = await store.get_job(job.id)
    assert (row.kind, row.mode, row.seed, row.count, row.params) == ("draft", "imagine", 42, 4, {"aspect": "1:1"})
    assert row.result_message_id == origin.deliveries[0].placeholder_id  # ❌ on the placeholder finds the job


async def test_drafts_are_delivered_as_four_pngs_with_controls(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="**bold** @everyone", seed=7, aspect="16:9")
    engine.finish(job.id)
    delivery = origin.deliveries[0]
    await eventually(lambda: delivery.posts)
    content, files, view = delivery.posts[0]
    assert [name for name, _ in files] == ["draft_1.png", "draft_2.png", "draft_3.png", "draft_4.png"]
    assert all(data.startswith(b"\x89PNG") for _, data in files)
    assert "@\u200beveryone" in content and "\\*\\*bold\\*\\*" in content and "`7`" in content
    ids = [item.custom_id for item in view.children]
    assert ids == [f"job:{job.id}:{a}" for a in ("u1", "u2", "u3", "u4", "v1", "v2", "v3", "v4", "reroll")]
    done = await wait_status(store, job.id, "done")
    assert done.seeds == (7, 8, 9, 10)
    assert done.timings["run"] == 0.2 and "deliver" in done.timings
    assert done.result_message_id is not None and done.result_message_id != delivery.placeholder_id
    assert delivery.reactions == [(done.result_message_id, "🔁")]
    assert (done.width, done.height) == (704, 384)


async def wait_status(store, job_id: int, status: str, timeout: float = 5.0):
    async def poll():
        while True:
            row = await store.get_job(job_id)
            if row.status == status:
                return row
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), timeout)


async def test_queue_position_then_progress_edits_for_a_final(service, store, engine):
    first = await service.imagine(RecordingOrigin(user_id=2), prompt="first")
    origin = RecordingOrigin()
    job = await service.final(origin, prompt="a lighthouse", seed=3, model="sdxl")
    delivery = origin.deliveries[0]
    await eventually(lambda: any("position 2" in s for s in delivery.shown))
    engine.finish(first.id)
    engine.run(job.id)
    await eventually(lambda: any("Starting" in s for s in delivery.shown))
    assert (await store.get_job(job.id)).status == "running"
    for step in range(1, 5):
        engine.progress(job.id, step, 4)
        await asyncio.sleep(0.03)
    await eventually(lambda: any("step 4/4" in s for s in delivery.shown))
    engine.finish(job.id)
    await eventually(lambda: delivery.posts)
    content, files, view = delivery.posts[0]
    assert [name for name, _ in files] == ["final.png"]
    assert "sdxl" in content and "4 steps" in content and "`3`" in content
    assert [item.custom_id for item in view.children][-1] == f"job:{job.id}:reroll"
    assert f"job:{job.id}:zoom2" in [item.custom_id for item in view.children]  # finals: zoom and pan


async def test_progress_edits_are_throttled(store, engine):
    service = make_service(store, engine)
    service.settings = service.settings.model_copy(update={"progress_interval": 0.5})
    origin = RecordingOrigin()
    job = await service.final(origin, prompt="slow", seed=1)
    engine.run(job.id)
    for step in range(1, 21):
        engine.progress(job.id, step, 20)
    await asyncio.sleep(0.3)
    delivery = origin.deliveries[0]
    steps = [s for s in delivery.shown if "step" in s]
    assert len(steps) <= 2  # 20 updates within half a second: at most the first and the newest
    await eventually(lambda: any("step 20/20" in s for s in delivery.shown), timeout=3)
    await service.shutdown(0.0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "   \n\t "}, "blank or invisible"),
        ({"prompt": "\u200b\u200c\u200d\u2060\ufeff"}, "blank or invisible"),
        ({"prompt": "x" * 1001}, "1,001 characters"),
        ({"prompt": "ok", "seed": -1}, "Seed -1 is out of range"),
        ({"prompt": "ok", "seed": 2**40}, f"Seed {2**40} is out of range"),
        ({"prompt": "ok", "seed": MAX_SEED}, "leaves no room for 4 images"),
        ({"prompt": "ok", "aspect": "7:5"}, "Unknown aspect ratio '7:5'"),
        ({"prompt": "ok", "negative_prompt": "n" * 1001}, "negative prompt is 1,001"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_queued(service, store, engine, kwargs, expected):
    origin = RecordingOrigin()
    assert await service.imagine(origin, **kwargs) is None
    assert len(origin.refusals) == 1 and expected in origin.refusals[0]
    assert origin.deliveries == [] and engine.submitted == []
    assert (await store.history(user_id=1))[1] == 0


async def test_emoji_only_prompt_is_accepted(service, engine):
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="🦊❄️🌲") is not None
    assert origin.refusals == [] and engine.submitted[0].request.prompt == "🦊❄️🌲"


async def test_final_seed_may_be_the_largest(service, engine):
    assert await service.final(RecordingOrigin(), prompt="ok", seed=MAX_SEED) is not None
    assert engine.submitted[0].request.seed == MAX_SEED


async def test_unknown_model_is_refused(service, engine):
    origin = RecordingOrigin()
    assert await service.final(origin, prompt="ok", model="dall-e") is None
    assert "Unknown model 'dall-e'" in origin.refusals[0] and engine.submitted == []


# --------------------------------------------------------------------------- limits


async def test_waiting_limit_per_user(service, store, engine):
    """A member may queue ten jobs by default; the eleventh is refused with where their next one stands."""
    assert await service.imagine(RecordingOrigin(user_id=2), prompt="first in line") is not None
    for _ in range(10):
        assert await service.imagine(RecordingOrigin(), prompt="cat") is not None
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="cat") is None
    assert "10 jobs waiting" in origin.refusals[0] and "/cancel" in origin.refusals[0]
    assert "position 2 in the queue" in origin.refusals[0]
    assert await service.imagine(RecordingOrigin(user_id=3), prompt="cat") is not None  # others are not held up
    assert len(engine.submitted) == 12


async def test_jobs_per_minute_limit(service, store, engine):
    await store.update_guild_settings(10, max_waiting_per_user=50, max_jobs_per_minute=2)
    service._guilds.clear()
    for _ in range(2):
        job = await service.imagine(RecordingOrigin(), prompt="cat")
        engine.finish(job.id)
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="cat") is None
    assert "2 jobs in the last minute" in origin.refusals[0]


async def test_full_queue_is_refused_before_anything_is_stored(store, engine):
    engine.queue_max = 1
    service = make_service(store, engine)
    engine.offer = dataclasses.replace(engine.offer, queue_max=1)
    assert await service.imagine(RecordingOrigin(user_id=1), prompt="a") is not None
    origin = RecordingOrigin(user_id=2)
    assert await service.imagine(origin, prompt="b") is None
    assert "queue is full" in origin.refusals[0]
    assert (await store.history(user_id=2))[1] == 0
    await service.shutdown(0.0)


async def test_queue_full_at_submit_fails_the_row_and_says_so(service, store, engine):
    engine.queue_max = 0  # the engine refuses although our own count said there was room
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="late")
    row = await store.get_job(job.id)
    assert row.status == "failed" and "queue is full" in row.error
    await eventually(lambda: any("queue is full" in s for s in origin.deliveries[0].shown))


async def test_blocked_words_only_outside_age_restricted_channels(service, store):
    await service.update_guild_settings(10, blocked_words=("gore",))
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="lots of Gore here") is None
    assert "“gore”" in origin.refusals[0]
    assert await service.imagine(RecordingOrigin(), prompt="gorgeous sunset") is not None  # whole words only
    assert await service.imagine(RecordingOrigin(age_restricted=True), prompt="gore") is not None


async def test_finals_outside_age_restricted_channels_can_be_turned_off(service, store, engine):
    await service.update_guild_settings(10, finals_outside_nsfw=False)
    origin = RecordingOrigin()
    assert await service.final(origin, prompt="x") is None
    assert "age-restricted channels only" in origin.refusals[0]
    draft = await service.imagine(RecordingOrigin(age_restricted=True), prompt="x")
    engine.finish(draft.id)
    await wait_status(store, draft.id, "done")
    origin = RecordingOrigin()
    assert await service.upscale(origin, draft.id, 1) is None
    assert "age-restricted channels only" in origin.refusals[0]
    assert await service.final(RecordingOrigin(age_restricted=True), prompt="x") is not None


async def test_direct_messages_are_refused(service):
    origin = RecordingOrigin(guild_id=None)
    assert await service.imagine(origin, prompt="x") is None
    assert "servers only" in origin.refusals[0]


async def test_no_new_jobs_while_shutting_down(service):
    await service.shutdown(0.0)
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="x") is None
    assert "restarting" in origin.refusals[0]


# --------------------------------------------------------------------------- U / V / reroll / repost


async def finished_draft(service, store, engine, **kwargs):
    job = await service.imagine(RecordingOrigin(), prompt=kwargs.pop("prompt", "a tree"), seed=100, **kwargs)
    engine.finish(job.id)
    return await wait_status(store, job.id, "done")


async def test_upscale_starts_from_the_draft(service, store, engine):
    draft = await finished_draft(service, store, engine, aspect="3:2")
    origin = RecordingOrigin(user_id=5)
    final = await service.upscale(origin, draft.id, 1)
    request = engine.item(final.id).request
    assert isinstance(request, FinalRequest) and request.seed == 101
    assert request.init == DraftInit(engine.item(draft.id).request, 1)
    assert request.strength == engine.offer.upscale_strength
    assert (request.width, request.height) == (1280, 832)  # 3:2 at about 1024x1024 pixels
    assert (final.kind, final.mode, final.parent_id, final.parent_index, final.user_id) == (
        "final",
        "upscale",
        draft.id,
        1,
        5,
    )


async def test_variation_and_its_variation_rebuild_the_chain(service, store, engine):
    draft = await finished_draft(service, store, engine)
    variation = await service.variation(RecordingOrigin(), draft.id, 2)
    engine.finish(variation.id)
    await wait_status(store, variation.id, "done")
    second = await service.variation(RecordingOrigin(), variation.id, 0)
    request = engine.item(second.id).request
    assert request.init.draft == engine.item(variation.id).request
    assert request.init.draft.init == DraftInit(engine.item(draft.id).request, 2)
    assert (request.steps, request.strength) == (2, 0.5)
    assert await rebuild_request(store, await store.get_job(second.id)) == request


async def test_u_and_v_refusals(service, store, engine):
    waiting = await service.imagine(RecordingOrigin(), prompt="slow")
    origin = RecordingOrigin()
    await service.upscale(origin, waiting.id, 0)
    await service.upscale(origin, 999, 0)
    draft = await finished_draft(service, store, engine)
    await service.variation(origin, draft.id, 4)
    final = await service.upscale(RecordingOrigin(), draft.id, 0)
    engine.finish(final.id)
    await wait_status(store, final.id, "done")
    await service.upscale(origin, final.id, 0)
    other_guild = RecordingOrigin(guild_id=11)
    await service.upscale(other_guild, draft.id, 0)
    assert origin.refusals == [
        f"Job #{waiting.id} isn't finished yet.",
        "There is no job #999.",
        f"Job #{draft.id} has 4 images; there is no image 5.",
        f"Job #{final.id} is a final; U and V buttons work on drafts.",
    ]
    assert other_guild.refusals == [f"Job #{draft.id} was made in another server."]


async def test_reroll_keeps_everything_but_the_seed(service, store, engine):
    draft = await finished_draft(service, store, engine, negative_prompt="blur", aspect="2:3")
    job = await service.reroll(RecordingOrigin(user_id=3), draft.id)
    old, new = engine.item(draft.id).request, engine.item(job.id).request
    assert new.seed != old.seed or new.seed == old.seed == 0
    assert dataclasses.replace(new, seed=old.seed) == old
    assert (job.mode, job.parent_id, job.params["reroll_of"], job.user_id) == ("reroll", draft.id, draft.id, 3)


async def test_repost_is_the_same_request_and_only_for_the_author_or_moderators(service, store, engine):
    draft = await finished_draft(service, store, engine)
    stranger = RecordingOrigin(user_id=9)
    assert await service.repost(stranger, draft.id) is None
    assert "belongs to someone else" in stranger.refusals[0]
    again = await service.repost(RecordingOrigin(user_id=9, moderator=True), draft.id)
    assert engine.item(again.id).request == engine.item(draft.id).request
    assert again.params["repost_of"] == draft.id


# --------------------------------------------------------------------------- failures and cancel


async def test_engine_failure_is_stored_and_shown(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x")
    engine.fail(job.id, "The model produced an all-black image. Try another seed or prompt.")
    row = await wait_status(store, job.id, "failed")
    assert row.error == "The model produced an all-black image. Try another seed or prompt."
    shown = origin.deliveries[0].shown
    await eventually(lambda: any("Failed: The model produced an all-black image" in s for s in shown))


@pytest.mark.parametrize(
    "detail",
    [
        "CUDA error: an illegal memory access was encountered",
        "Model ssd-1b failed to load: OSError: /srv/bot/models/ssd-1b/unet/config.json is not a file",
        "The image engine failed: RuntimeError. Please retry.",
        'Traceback (most recent call last):\n  File "engine/recipes.py", line 3',
        "Could not encode the image: [Errno 28] No space left on device: 'C:\\bot\\tmp\\x.png'",
    ],
)
async def test_internal_failure_text_stays_in_the_log_and_the_row(service, store, engine, caplog, detail):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x")
    engine.fail(job.id, detail)
    row = await wait_status(store, job.id, "failed")
    assert row.error == detail  # the row and the log keep the detail for the owner
    shown = await eventually(lambda: [s for s in origin.deliveries[0].shown if "⚠️" in s])
    assert f"Something went wrong on my side while making job #{job.id}" in shown[-1]
    for leak in ("CUDA", "OSError", "RuntimeError", "/srv", "Traceback", ".py", "Errno", "C:\\"):
        assert leak not in shown[-1]
    assert any(detail in r.getMessage() for r in caplog.records)


async def test_result_that_cannot_be_posted_is_still_recorded(service, store, engine):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="x", seed=5)
    origin.deliveries[0].post_error = DeliveryError("The channel <#100> no longer exists.")
    engine.finish(job.id)
    row = await wait_status(store, job.id, "done")
    assert row.seeds == (5, 6, 7, 8)
    await eventually(lambda: origin.deliveries[0].told)
    assert "could not post it" in origin.deliveries[0].told[0]


async def test_cancel_by_author_moderator_and_others(service, store, engine):
    job = await service.imagine(RecordingOrigin(user_id=1), prompt="x")
    with pytest.raises(Exception, match="not yours"):
        await service.cancel(job.id, user_id=2, moderator=False, guild_id=10)
    with pytest.raises(Exception, match="another server"):
        await service.cancel(job.id, user_id=1, moderator=False, guild_id=11)
    assert await service.cancel(job.id, user_id=1, moderator=False, guild_id=10) == f"Cancelled job #{job.id}."
    await wait_status(store, job.id, "cancelled")
    with pytest.raises(Exception, match="already cancelled"):
        await service.cancel(job.id, user_id=1, moderator=False, guild_id=10)
    other = await service.imagine(RecordingOrigin(user_id=1), prompt="y")
    assert "Cancelled" in await service.cancel(other.id, user_id=7, moderator=True, guild_id=10)
    await wait_status(store, other.id, "cancelled")
    with pytest.raises(Exception, match="no job #-3"):
        await service.cancel(-3, user_id=1, moderator=False, guild_id=10)


# --------------------------------------------------------------------------- restart and shutdown


async def test_shutdown_leaves_waiting_jobs_queued(service, store, engine):
    running = await service.imagine(RecordingOrigin(user_id=1), prompt="running")
    waiting = [await service.imagine(RecordingOrigin(user_id=u), prompt="waiting") for u in (2, 3)]
    engine.run(running.id)
    await wait_status(store, running.id, "running")
    original_close = engine.close

    async def close(timeout):
        engine.finish(running.id)  # the running job finishes within the timeout
        return await original_close(timeout)

    engine.close = close
    await service.shutdown(5.0)
    assert (await store.get_job(running.id)).status == "done"
    for job in waiting:
        assert (await store.get_job(job.id)).status == "queued"


async def test_restart_requeues_and_delivers_unfinished_jobs(store, tmp_path):
    # Rows as a previous run left them: one running, two waiting, one done.
    first_engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    first = make_service(store, first_engine)
    jobs = [await first.imagine(RecordingOrigin(user_id=u), prompt=f"job {u}") for u in (1, 2, 3)]
    done = await first.imagine(RecordingOrigin(user_id=4), prompt="done")
    first_engine.finish(done.id)
    await wait_status(store, done.id, "done")
    first_engine.run(jobs[0].id)
    await wait_status(store, jobs[0].id, "running")
    await first.shutdown(0.0)

    deliveries: dict[int, RecordingDelivery] = {}

    def delivery_for_job(client, job):
        deliveries[job.id] = RecordingDelivery(channel_id=job.channel_id, placeholder_id=job.result_message_id)
        return deliveries[job.id]

    engine = FakeEngine(str(tmp_path / "history.sqlite3"))
    service = make_service(store, engine, delivery_for_job=delivery_for_job)
    assert await service.start() == 3
    assert [s.job_id for s in engine.submitted] == [str(j.id) for j in jobs]
    assert all(s.row_status == "queued" for s in engine.submitted)  # the running one was requeued
    for job in jobs:
        assert engine.item(job.id).request == first_engine.item(job.id).request
        engine.finish(job.id)
    for job in jobs:
        row = await wait_status(store, job.id, "done")
        assert deliveries[job.id].posts and row.result_message_id is not None
        assert any("after a restart" in s for s in deliveries[job.id].shown)
    await service.shutdown(0.0)


async def test_restart_fails_a_job_whose_parent_is_gone(store, engine):
    orphan = await store.create_job(
        NewJob(
            kind="final",
            mode="upscale",
            guild_id=10,
            channel_id=100,
            user_id=1,
            prompt="p",
            model="ssd-1b",
            width=1024,
            height=1024,
            seed=1,
            parent_id=None,
            parent_index=None,
        )
    )
    orphan_row = dataclasses.replace(orphan, parent_index=0, parent_id=424242)
    with pytest.raises(RebuildError, match="no longer exists"):
        await rebuild_request(store, orphan_row)


# --------------------------------------------------------------------------- request_for


def _row(**changes):
    base = dict(
        id=1,
        kind="draft",
        mode="imagine",
        parent_id=None,
        parent_index=None,
        guild_id=10,
        channel_id=100,
        user_id=1,
        prompt="p",
        negative_prompt="n",
        model="turbo",
        width=512,
        height=768,
        steps=1,
        guidance=None,
        seed=5,
        count=4,
        strength=None,
        params={},
        status="queued",
        error=None,
        seeds=(),
        timings={},
        created_at=0.0,
        started_at=None,
        finished_at=None,
        source_message_id=None,
        interaction_token=None,
        interaction_expires_at=None,
        result_channel_id=None,
        result_message_id=None,
        favorite=False,
    )
    base.update(changes)
    from core.history import JobRecord

    return JobRecord(**base)


def test_request_for_round_trips():
    draft = _row()
    assert request_for(draft) == DraftRequest(prompt="p", seed=5, negative_prompt="n", width=512, height=768, count=4)
    final = _row(id=2, kind="final", mode="final", model="sdxl", width=1024, height=1024, steps=None, count=1, seed=9)
    assert request_for(final) == FinalRequest(prompt="p", seed=9, negative_prompt="n", model="sdxl")
    upscale = _row(
        id=3,
        kind="final",
        mode="upscale",
        model="ssd-1b",
        parent_id=1,
        parent_index=3,
        strength=0.4,
        width=1024,
        height=1536,
        steps=None,
        count=1,
        seed=8,
    )
    parent_request = request_for(draft)
    rebuilt = request_for(upscale, parent_request)
    assert rebuilt.init == DraftInit(parent_request, 3) and rebuilt.strength == 0.4
    with pytest.raises(RebuildError):
        request_for(upscale)
    with pytest.raises(RebuildError):
        request_for(_row(parent_id=1, parent_index=7), parent_request)


def test_queue_positions_are_shown_for_every_move_near_the_front_and_big_moves_further_back():
    from core.jobs import position_worth_showing

    assert position_worth_showing(None, 40)
    assert not position_worth_showing(40, 40)
    assert not position_worth_showing(40, 39)
    assert position_worth_showing(40, 32)
    assert position_worth_showing(6, 5) and position_worth_showing(2, 1)
    shown, last = [], None
    for position in range(50, 0, -1):
        if position_worth_showing(last, position):
            shown.append(position)
            last = position
    assert len(shown) < 20 and shown[-5:] == [5, 4, 3, 2, 1]


async def test_an_unreachable_engine_is_shown_and_the_job_runs_when_it_is_back(service, store, engine):
    first = await service.imagine(RecordingOrigin(user_id=2), prompt="ahead")
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a fox while the cluster is down")
    delivery = origin.deliveries[0]
    await eventually(lambda: any("position 2" in s for s in delivery.shown))
    engine.reachable = False
    await eventually(lambda: "unreachable right now" in delivery.shown[-1])
    assert "your job is kept and will run when it is back" in delivery.shown[-1]
    assert (await store.get_job(job.id)).status == "queued"
    engine.reachable = True
    engine.finish(first.id)
    await eventually(lambda: "next in line" in delivery.shown[-1])  # the position shows again
    engine.finish(job.id)
    assert (await wait_status(store, job.id, "done")).seeds
    assert delivery.posts and all("unreachable" not in content for content, _, _ in delivery.posts)


async def test_a_failing_finish_job_is_logged_not_left_in_a_dying_task(service, store, engine, monkeypatch, caplog):
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a kite", seed=1)
    task = service._active[job.id].task

    async def broken_finish(*args, **kwargs):
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "finish_job", broken_finish)
    engine.finish(job.id)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5.0)
    assert not task.cancelled() and task.exception() is None
    assert "delivery did not complete" in caplog.text
    assert len(origin.deliveries[0].posts) == 1
    row = await store.get_job(job.id)  # what was posted is on record: a restart edits that message
    assert row.result_message_id is not None and row.result_message_id != origin.deliveries[0].placeholder_id


async def test_the_row_is_written_before_discord_is_answered(service, store, engine):
    """A bot killed right after answering must find the job on its next start."""
    rows_at_ack: list[int] = []

    class Watching(RecordingOrigin):
        async def acknowledge(self, content):
            rows_at_ack.append(len(await store.unfinished_jobs()))
            return await super().acknowledge(content)

    job = await service.imagine(Watching(), prompt="a lamp", seed=2)
    assert rows_at_ack == [1] and job is not None


async def test_a_request_that_could_not_be_answered_is_not_run(service, store, engine):
    class Unreachable(RecordingOrigin):
        async def acknowledge(self, content):
            raise DeliveryError("The channel <#100> no longer exists.")

    assert await service.imagine(Unreachable(), prompt="a lamp") is None
    assert engine.submitted == [] and await store.unfinished_jobs() == []
