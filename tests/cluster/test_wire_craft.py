"""The wire format carries the prompt-craft fields and the upscale and describe requests unchanged."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from engine.cluster import wire
from engine.requests import (
    DescribeRequest,
    DraftInit,
    DraftRequest,
    FinalRequest,
    UpscaleRequest,
)
from engine.results import GeneratedImage, JobResult


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
CRAFTED = DraftRequest(
    "a (red:1.3) fox", seed=7, tile=True, loras=(("ink", 0.8), ("glow", -0.5)), reference=PNG,
    reference_weight=0.7, reference_mode="style", chaos=35,
)
REQUESTS = [
    CRAFTED,
    FinalRequest("final", seed=8, tile=True, loras=(("ink", 1.0),), reference=PNG, reference_weight=1.5),
    FinalRequest("upscale of a crafted draft", seed=9, init=DraftInit(CRAFTED, 3), strength=0.4),
    UpscaleRequest(PNG, mode="creative", prompt="a fox", negative_prompt="blur", seed=4, model="sdxl"),
    UpscaleRequest(PNG),
    DescribeRequest(PNG, count=3),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.kind)
def test_crafted_requests_round_trip(request_):
    decoded = wire.decode_request(json.loads(json.dumps(wire.encode_request(request_))))
    assert decoded == request_
    assert type(decoded) is type(request_)


def _through_frames(result: JobResult) -> dict:
    (frame,) = wire.FrameReader(wire.ANSWER_TYPES).feed(wire.result_frame(result))
    return frame["result"]


def test_describe_result_round_trips_its_suggestions():
    result = JobResult((), "describe", DescribeRequest(PNG), 0, 0.0, {"run": 0.1}, 1, ("a cat", "a dog", "a bird"))
    assert wire.decode_result(_through_frames(result)) == result
    upscaled = JobResult((GeneratedImage(PNG, 4, 16, 16),), "ssd-1b", UpscaleRequest(PNG, seed=4), 0, 0.0, {}, 1)
    assert wire.decode_result(_through_frames(upscaled)) == upscaled


@pytest.mark.parametrize(
    "bad",
    [
        {**wire.encode_request(CRAFTED), "loras": [["ink"]]},
        {**wire.encode_request(CRAFTED), "loras": "ink"},
        {**wire.encode_request(UpscaleRequest(PNG)), "strength": 0.3},
        {"kind": "describe", "image": "***"},
    ],
)
def test_malformed_crafted_requests_are_refused(bad):
    with pytest.raises(wire.WireError):
        wire.decode_request(bad)
