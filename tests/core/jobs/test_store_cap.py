"""The image store's cap holds when writing, and each member's uploads have an hourly budget (#21 item 1).

One member sending a photo and a reference twelve times a minute used to fill the store far past
``IMAGE_STORE_MAX_MB``, and the next hourly prune then removed every other member's kept images.
"""

from __future__ import annotations

import os

from pydantic import SecretStr

from core.jobs.images import FULL
from core.settings import BotSettings
from tests.core.doubles import RecordingOrigin
from tests.core.jobs.support import make_service
from tests.images import photo_array, png_of

KB = 1024


def upload(n: int) -> bytes:
    """A different incompressible 240x240 picture for each ``n``: about 170 KB of PNG."""
    return png_of(photo_array(240, seed=n))


def service_with(store, engine, inputs, clock, **settings):
    return make_service(
        store,
        engine,
        inputs=inputs,
        clock=clock,
        settings=BotSettings.model_construct(
            token=SecretStr("test"), progress_interval=0.01, queue_update_interval=0.02, **settings
        ),
    )


async def test_a_write_past_the_cap_prunes_the_oldest_first_and_is_refused_when_waiting_jobs_fill_it(
    store, engine, inputs
):
    now = [1_000_000.0]
    size = len(upload(0))
    cap_mb = 1
    service = service_with(store, engine, inputs, lambda: now[0], image_store_max_mb=cap_mb)
    try:
        await service.prune_images()  # at start; the next one would be an hour later
        for job_id in (1, 2, 3):  # other members' kept finals, older than anything else
            await service.images.keep_result(job_id, upload(100 + job_id))
            os.utime(inputs.results / f"{job_id}.png", (job_id, job_id))
        origin = RecordingOrigin(user_id=7)
        accepted = []
        for n in range(8):
            job = await service.imagine(origin, prompt="again", image=upload(n))
            assert inputs.usage_sync() <= cap_mb * 2**20  # the cap holds at every write
            if job is not None:
                accepted.append(job)
        assert not (inputs.results / "1.png").exists(), origin.refusals  # the oldest went first
        # The member's waiting jobs hold their images: once they fill the cap, more is refused, not pruned.
        assert len(accepted) == (cap_mb * 2**20) // size
        assert origin.refusals and origin.refusals[-1] == FULL
        assert all(inputs.has_sync(job.params.init_image) for job in accepted)
    finally:
        await service.shutdown(0.0)


async def test_each_member_has_an_hourly_upload_budget_and_is_told_when_they_can_upload_again(
    store, engine, inputs
):
    now = [1_000_000.0]
    size = len(upload(0))
    service = service_with(store, engine, inputs, lambda: now[0], upload_mb_per_hour=1)
    try:
        member, other = RecordingOrigin(user_id=7), RecordingOrigin(user_id=8)
        fits = 2**20 // size
        for n in range(fits):
            assert await service.imagine(member, prompt="a", image=upload(n)) is not None
            now[0] += 60
        assert await service.imagine(member, prompt="again", image=upload(0)) is not None  # stored already: free
        assert await service.imagine(member, prompt="one more", image=upload(99)) is None
        minutes = 60 - fits  # the first upload leaves the hour then
        assert member.refusals == [
            f"You have stored 1 MB of images in the last hour; the limit is 1 MB an hour. "
            f"You can upload again in {minutes} minutes."
        ]
        assert await service.imagine(other, prompt="mine", image=upload(50)) is not None  # others are not held up
        now[0] += minutes * 60
        assert await service.imagine(member, prompt="later", image=upload(99)) is not None
    finally:
        await service.shutdown(0.0)


async def test_a_job_from_a_jpeg_upload_and_an_old_png_one_are_rebuilt_and_read_by_the_engine(
    service, store, engine, inputs
):
    """After a restart (``rebuild_request``) the stored JPEG is what the engine gets, and it decodes it;
    an upload an older version stored as PNG is rebuilt the same way."""
    from core.attachments import normalize_image
    from core.jobs.addons import Addons
    from core.jobs.rows import rebuild_request
    from engine.canvas import open_image

    photo = normalize_image(upload(1))  # what the cogs store now
    look = normalize_image(upload(2))
    new = await service.imagine(
        RecordingOrigin(), prompt="from a jpeg", image=photo, addons=Addons.from_options(reference=look)
    )
    old = await service.imagine(RecordingOrigin(user_id=3), prompt="from a png", image=upload(3))
    assert (inputs.inputs / f"{new.params.init_image}.jpg").is_file()
    assert (inputs.inputs / f"{old.params.init_image}.png").is_file()
    for job in (new, old):
        rebuilt = await rebuild_request(store, await store.get_job(job.id), inputs)
        assert rebuilt == engine.item(job.id).request
        assert open_image(rebuilt.init.data).size == (240, 240)
    rebuilt = await rebuild_request(store, await store.get_job(new.id), inputs)
    assert rebuilt.init.data == photo and rebuilt.reference == look and open_image(look).mode == "RGB"
