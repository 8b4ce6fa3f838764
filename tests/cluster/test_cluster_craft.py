"""Prompt craft through the cluster engine: crafted drafts, upscale 2x and describe reach the replicas and back."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.api import DescribeRequest, DraftRequest, FinalRequest, JobFailed, UpscaleRequest
from engine.output import read_parameters

pytestmark = pytest.mark.slow


async def run(engine, request, job_id):
    return await (await engine.submit(request, user="u", job_id=job_id)).result()


@pytest.mark.timeout(180)
async def test_crafted_jobs_upscale_and_describe_through_the_cluster(engine):
    assert engine.offer.loras == ("tiny-glow", "tiny-ink") and engine.offer.describe and engine.offer.reference
    drafted = await run(engine, DraftRequest("a fox", seed=2, width=256, height=256, count=2, chaos=20,
                                             tile=True, loras=(("tiny-glow", 0.7),)), "craft-1")
    assert [image.seed for image in drafted.images] == list(drafted.request.seeds)
    assert "Tiling: True, Lora: tiny-glow:0.7, Chaos: 20" in read_parameters(drafted.images[0].png)
    final = await run(engine, FinalRequest("a fox", seed=2, width=256, height=256, steps=4), "craft-2")
    upscaled = await run(engine, UpscaleRequest(final.images[0].png, mode="creative", seed=2), "craft-3")
    with Image.open(io.BytesIO(upscaled.images[0].png)) as img:
        assert img.size == (512, 512)
    described = await run(engine, DescribeRequest(final.images[0].png), "craft-4")
    assert described.images == () and 3 <= len(described.suggestions) <= 4
    with pytest.raises(JobFailed, match="Unknown LoRA 'nope'"):
        await run(engine, DraftRequest("a fox", seed=2, width=256, height=256, loras=(("nope", 1.0),)), "craft-5")
