"""Stored start images (core/jobs/images.py): those of refused and cancelled jobs go, shared ones stay."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from core.delivery import DeliveryError
from core.history import JobParams
from core.jobs.addons import Addons
from core.jobs.images import GONE
from core.jobs.rows import rebuild_request
from tests.core.doubles import FakeEngine, RecordingOrigin, eventually, png
from tests.core.jobs.support import make_service, wait_status
from tests.core.records import new_job


def stored(inputs) -> set[str]:
    return {path.stem for path in inputs.inputs.glob("*.png")} if inputs.inputs.is_dir() else set()


async def test_uploads_the_engine_refuses_leave_no_file_but_a_shared_image_of_a_live_job_stays(
    service, store, engine, inputs
):
    shared = png(512, 512, (1, 2, 3))
    live = await service.imagine(RecordingOrigin(user_id=2), prompt="a", image=shared)
    assert stored(inputs) == {live.params.init_image}
    engine.queue_max = 1  # the engine is full although our own count said there was room
    refused = []
    for shade in range(4):
        origin = RecordingOrigin()
        job = await service.imagine(origin, prompt="b", image=png(512, 512, (shade, 9, 9)))
        refused.append(job)
        assert (await store.get_job(job.id)).status == "failed"
        await eventually(lambda o=origin: any("queue is full" in s for s in o.deliveries[0].shown))
    same = await service.imagine(RecordingOrigin(), prompt="c", image=shared)  # refused too, shares the file
    assert (await store.get_job(same.id)).status == "failed" and same.params.init_image == live.params.init_image
    assert stored(inputs) == {live.params.init_image}  # no file for a refused job; the live job keeps its own
    engine.finish(live.id)
    await wait_status(store, live.id, "done")
    assert stored(inputs) == {live.params.init_image}  # done: 🔁 and /show make it again from it


async def test_the_same_upload_sent_again_after_a_refusal_is_removed_again(service, store, engine, inputs):
    engine.queue_max = 0
    photo = png(512, 512, (4, 5, 6))
    for _ in range(3):  # an earlier failed row naming the file does not keep it
        job = await service.imagine(RecordingOrigin(), prompt="again", image=photo)
        assert (await store.get_job(job.id)).status == "failed"
        assert stored(inputs) == set()


async def test_a_cancelled_jobs_image_goes_unless_a_done_job_shares_it(service, store, engine, inputs):
    photo, other = png(512, 512, (7, 7, 7)), png(512, 512, (8, 8, 8))
    done = await service.imagine(RecordingOrigin(), prompt="kept", image=photo)
    engine.finish(done.id)
    await wait_status(store, done.id, "done")
    sharing = await service.imagine(RecordingOrigin(), prompt="shares it", image=photo)
    alone = await service.imagine(RecordingOrigin(), prompt="alone", image=other)
    for job in (sharing, alone):
        assert "Cancelled" in await service.cancel(job.id, user_id=1, moderator=False, guild_id=10)
        await wait_status(store, job.id, "cancelled")
    await eventually(lambda: stored(inputs) == {done.params.init_image})


async def test_a_cancelled_jobs_reference_goes_unless_a_done_job_borrows_it_too(service, store, engine, inputs):
    photo, other = png(96, 80, (7, 70, 7)), png(96, 80, (8, 80, 8))

    def borrowing(image: bytes) -> Addons:
        return Addons.from_options(reference=image)

    done = await service.imagine(RecordingOrigin(), prompt="kept", addons=borrowing(photo))
    engine.finish(done.id)
    await wait_status(store, done.id, "done")
    sharing = await service.imagine(RecordingOrigin(), prompt="shares it", addons=borrowing(photo))
    alone = await service.imagine(RecordingOrigin(), prompt="alone", addons=borrowing(other))
    assert len(stored(inputs)) == 2
    for job in (sharing, alone):
        assert "Cancelled" in await service.cancel(job.id, user_id=1, moderator=False, guild_id=10)
        await wait_status(store, job.id, "cancelled")
    await eventually(lambda: stored(inputs) == {done.params.reference_image})


async def test_an_edit_whose_acknowledgement_fails_leaves_neither_image(service, store, engine, inputs):
    class Gone(RecordingOrigin):
        async def acknowledge(self, content):
            raise DeliveryError("The channel <#100> no longer exists.")

    assert await service.edit(Gone(), prompt="a hat", image=png(512, 512), mask=png(512, 512, (255, 255, 255))) is None
    assert engine.submitted == [] and stored(inputs) == set()


async def test_a_release_keeps_an_image_that_another_row_borrows_as_its_reference(service, store, inputs):
    images = service.images
    key = await images.keep(png(64, 64, (5, 5, 5)))  # one job's start image ...
    images.settle([key])
    await store.create_job(new_job(params=JobParams(reference_image=key)))  # ... is another's reference
    await images.release([key], job_id=424242)  # the first job was cancelled
    assert stored(inputs) == {key}


@pytest.mark.parametrize("kept", ["before", "while it asked"])
async def test_a_release_does_not_remove_an_image_whose_row_was_written_while_it_asked(service, store, inputs, kept):
    """A new request keeps the same image and writes its row while the release asks the store: it stays."""
    images = service.images
    photo = png(64, 64, (3, 3, 3))
    key = await images.keep(photo)
    images.settle([key])
    if kept == "before":
        await images.keep(photo)  # held: its row comes while the release asks
    asking, answer = asyncio.Event(), asyncio.Event()

    async def slow_answer(key, *, besides=()):
        asking.set()
        await answer.wait()
        return False  # what the store said before the new row was written

    store.image_in_use = slow_answer
    release = asyncio.create_task(images.release([key], job_id=1))
    await asyncio.wait_for(asking.wait(), 5.0)
    if kept == "before":
        images.settle([key])  # its row is written now
    else:
        images.settle([await images.keep(photo)])  # kept and its row written meanwhile
    answer.set()
    await release
    assert stored(inputs) == {key}
    assert images._kept_meanwhile == set() and not images._holding


async def test_a_job_that_cannot_be_restarted_leaves_no_image(store, engine, inputs, tmp_path):
    first = make_service(store, engine, inputs=inputs)
    job = await first.edit(RecordingOrigin(), prompt="a red hat", image=png(512, 512), region=(0, 0, 50, 50))
    await first.shutdown(0.0)
    inputs.remove_sync(job.params.init_image)  # deleted by hand while the bot was down: only the mask is left
    assert stored(inputs) == {job.params.mask_image}
    second = make_service(store, FakeEngine(str(tmp_path / "history.sqlite3")), inputs=inputs)
    assert await second.start() == 0
    assert (await store.get_job(job.id)).status == "failed" and stored(inputs) == set()
    await second.shutdown(0.0)


def over_the_cap(service, inputs) -> None:
    """Every stored file is long past the retention and the cap is 0: a prune takes all it may."""
    for path in [*inputs.inputs.glob("*.png"), *inputs.results.glob("*.png")]:
        os.utime(path, (1, 1))
    service.settings = service.settings.model_copy(update={"image_retention_days": 1.0, "image_store_max_mb": 0})


async def test_a_prune_keeps_an_image_a_request_holds_for_the_row_it_is_about_to_write(service, inputs):
    images = service.images
    key = await images.keep(png(64, 64, (6, 6, 6)))  # the request's limits passed, its row is not written yet
    gone = await images.keep(png(64, 64, (7, 7, 7)))
    await images.drop([gone])  # that request was refused: its image went with it
    loose = await inputs.put(png(64, 64, (8, 8, 8)))  # on disk, no row and no request needs it
    over_the_cap(service, inputs)
    assert await service.prune_images() == (1, len(png(64, 64, (8, 8, 8))))
    assert stored(inputs) == {key} and loose not in stored(inputs)
    images.settle([key])


def paused_prune(inputs, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make the next prune stop in its thread after it read the unfinished rows: (it is there, let it go on)."""
    choosing, go = threading.Event(), threading.Event()
    real = inputs.prunable_sync

    def slow_choice(**limits):
        choosing.set()
        go.wait(5)
        return real(**limits)

    monkeypatch.setattr(inputs, "prunable_sync", slow_choice)
    return choosing, go


async def test_an_image_held_and_written_into_a_row_while_a_prune_runs_stays(service, inputs, monkeypatch):
    images = service.images
    photo = png(64, 64, (9, 9, 9))
    key = await inputs.put(photo)  # stored by a job that is done and gone
    over_the_cap(service, inputs)
    choosing, go = paused_prune(inputs, monkeypatch)
    prune = asyncio.create_task(service.prune_images())
    assert await asyncio.to_thread(choosing.wait, 5)
    assert await images.keep(photo) == key  # a new request with the same image (the file is there: not rewritten)
    images.settle([key])  # ... whose row is written before the prune ends: the rows it read did not have it
    go.set()
    assert await prune == (0, 0)
    assert stored(inputs) == {key}


@pytest.mark.parametrize("source", ["a start image", "a final's kept result"])
async def test_a_reroll_stored_while_a_prune_runs_keeps_the_image_its_row_names(
    service, store, engine, inputs, monkeypatch, source
):
    """🔁 names the image of the job it repeats without keeping it again: it must still be there after the prune."""
    if source == "a start image":
        job = await service.imagine(RecordingOrigin(), prompt="from a photo", image=png(64, 64, (3, 3, 3)))
    else:
        final = await service.final(RecordingOrigin(), prompt="a harbour")
        engine.finish(final.id)
        await wait_status(store, final.id, "done")
        await eventually(lambda: inputs.result_sync(final.id) is not None)
        job = await service.vary(RecordingOrigin(), final.id, "vary_subtle")
    engine.finish(job.id)
    await wait_status(store, job.id, "done")
    over_the_cap(service, inputs)  # the job is done: its images are the prune's to take
    choosing, go = paused_prune(inputs, monkeypatch)
    prune = asyncio.create_task(service.prune_images())
    assert await asyncio.to_thread(choosing.wait, 5)
    again = await service.reroll(RecordingOrigin(), job.id)
    assert (await store.get_job(again.id)).status == "queued"
    go.set()
    await prune
    # The queued reroll can still be made again from its row (as a restart does).
    assert await rebuild_request(store, await store.get_job(again.id), inputs) == engine.item(again.id).request


async def test_a_reroll_whose_image_went_right_after_it_was_read_is_refused_and_stores_no_row(
    service, store, engine, inputs, monkeypatch
):
    job = await service.imagine(RecordingOrigin(), prompt="from a photo", image=png(64, 64, (4, 4, 4)))
    engine.finish(job.id)
    await wait_status(store, job.id, "done")
    read = service.checks.rebuild

    async def read_then_pruned(record):
        request = await read(record)
        inputs.remove_sync(record.params.init_image)  # a prune took it between the read and the row
        return request

    monkeypatch.setattr(service.checks, "rebuild", read_then_pruned)
    origin = RecordingOrigin()
    assert await service.reroll(origin, job.id) is None
    assert origin.refusals == [GONE] and len(engine.submitted) == 1
    assert await store.get_job(job.id + 1) is None  # no row for it


async def test_a_prune_removes_the_temporary_files_a_crash_mid_write_left_and_only_stale_ones(service, inputs):
    """A kill between mkstemp and os.replace leaves ``.<name>.<random>.tmp``: the next prune takes it once stale."""
    key = await inputs.put(png(64, 64, (5, 5, 5)))
    await inputs.put_result(3, png(64, 64, (4, 4, 4)))
    stale = [inputs.inputs / f".{key}.png.abc123.tmp", inputs.results / ".9.png.def456.tmp"]
    fresh = inputs.inputs / ".feed.png.ghi789.tmp"  # a write under way right now
    for path in [*stale, fresh]:
        path.write_bytes(b"half an image")
    for path in stale:
        os.utime(path, (1, 1))
    # the default settings: no retention limit reached, no cap passed; only the leftovers go
    assert await service.prune_images() == (2, 2 * len(b"half an image"))
    assert not any(path.exists() for path in stale) and fresh.exists()
    assert stored(inputs) == {key} and await inputs.result(3) == png(64, 64, (4, 4, 4))
