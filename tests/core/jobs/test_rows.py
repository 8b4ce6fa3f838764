"""Rows and requests: a row's request rebuilt alone or with its chain, and a request's new row."""

from __future__ import annotations

import dataclasses

import pytest

from core.history import JobMode, JobParams, NewJob
from core.jobs.rows import RebuildError, new_job_fields, rebuild_request, request_for
from engine.api import DraftInit, DraftRequest, FinalRequest, ImageInit, UpscaleRequest
from tests.core.doubles import png
from tests.core.records import job_record as _row
from tests.core.records import new_job


async def test_restart_fails_a_job_whose_parent_is_gone(store, engine):
    orphan = await store.create_job(new_job(kind="final", mode="upscale", model="ssd-1b", width=1024, height=1024))
    orphan_row = dataclasses.replace(orphan, parent_index=0, parent_id=424242)
    with pytest.raises(RebuildError, match="no longer exists"):
        await rebuild_request(store, orphan_row)


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


def test_a_new_rows_fields_come_from_its_request():
    final = FinalRequest(prompt="p", seed=3, model="sdxl", steps=30, guidance=5.0)
    fields = new_job_fields(final, mode="final", params=JobParams(aspect="1:1"))
    assert NewJob(**fields, guild_id=10, channel_id=100, user_id=1) == NewJob(
        kind="final", mode="final", guild_id=10, channel_id=100, user_id=1, prompt="p", model="sdxl",
        width=1024, height=1024, seed=3, steps=30, guidance=5.0, count=1, params=JobParams(aspect="1:1"),
    )
    draft = DraftRequest(prompt="p", seed=1, strength=0.3)  # no start image: the strength means nothing
    assert new_job_fields(draft, mode="imagine", params=JobParams())["strength"] is None
    upscale = dataclasses.replace(final, init=DraftInit(draft, 2), strength=0.4)
    fields = new_job_fields(upscale, mode="upscale", params=JobParams(), parent_id=7, parent_index=2)
    assert (fields["strength"], fields["parent_id"], fields["parent_index"]) == (0.4, 7, 2)


async def test_an_upscale_row_rebuilds_from_its_stored_image(store, inputs):
    source = png(512, 384)
    key = await inputs.put(source)
    row = _row(id=7, kind="final", mode="upscale2x", model="sdxl", width=1024, height=768, steps=None, count=1,
               seed=3, parent_id=6, params=JobParams(upscale="subtle", init_image=key))
    request = await rebuild_request(store, row, inputs)
    assert request == UpscaleRequest(image=source, mode="subtle", prompt="p", negative_prompt="n", seed=3,
                                     model="sdxl")
    fields = new_job_fields(request, mode=JobMode.REROLL, params=row.params, parent_id=7)
    assert (fields["kind"], fields["width"], fields["height"], fields["steps"], fields["strength"]) == (
        "final", 1024, 768, None, None
    )
    with pytest.raises(RebuildError, match="the image it enlarges"):
        request_for(dataclasses.replace(row, params=JobParams(upscale="subtle")))


async def test_an_upscale_row_rebuilds_from_the_kept_result_it_names(store, inputs):
    source = png(512, 384)
    await inputs.put_result(6, source)
    row = _row(id=7, kind="final", mode="upscale2x", model="sdxl", width=1024, height=768, steps=None, count=1,
               seed=3, parent_id=6, params=JobParams(upscale="creative", init_result=6))
    assert await rebuild_request(store, row, inputs) == UpscaleRequest(
        image=source, mode="creative", prompt="p", negative_prompt="n", seed=3, model="sdxl"
    )
    gone = dataclasses.replace(row, params=JobParams(upscale="creative", init_result=5))
    with pytest.raises(RebuildError, match="the image of job 5 is no longer stored"):
        await rebuild_request(store, gone, inputs)
    with pytest.raises(RebuildError, match="no image store"):
        await rebuild_request(store, row)


async def test_a_vary_row_starts_from_the_kept_result_it_names(store, inputs):
    source = png(512, 384)
    await inputs.put_result(6, source)
    row = _row(id=7, kind="final", mode="vary", model="sdxl", width=512, height=384, steps=None, count=1,
               seed=3, parent_id=6, strength=0.35, params=JobParams(vary="subtle", init_result=6))
    assert await rebuild_request(store, row, inputs) == FinalRequest(
        prompt="p", seed=3, negative_prompt="n", width=512, height=384, model="sdxl", init=ImageInit(source),
        strength=0.35,
    )
    with pytest.raises(RebuildError, match="the kept image of job 6"):
        request_for(row)
    gone = dataclasses.replace(row, params=JobParams(vary="subtle", init_result=5))
    with pytest.raises(RebuildError, match="the image of job 5 is no longer stored"):
        await rebuild_request(store, gone, inputs)
