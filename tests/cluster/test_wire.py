"""The cluster's JSON wire format: every request and result survives the trip unchanged."""

from __future__ import annotations

import json

import pytest

from engine.cluster import wire
from engine.requests import DraftInit, DraftRequest, FinalRequest, ImageInit
from engine.results import GeneratedImage, JobResult

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

DRAFT = DraftRequest("a red fox", seed=7, negative_prompt="blurry", width=768, height=512, count=3, steps=2)
REQUESTS = [
    DRAFT,
    DraftRequest("variation", seed=9, init=DraftInit(DRAFT, 2), steps=2, strength=0.5),
    DraftRequest("from a photo", seed=1, init=ImageInit(PNG), steps=4, strength=0.25),
    FinalRequest("upscale", seed=DRAFT.seed + 1, init=DraftInit(DRAFT, 1), model="sdxl", strength=0.45),
    FinalRequest("plain", seed=0, steps=None, guidance=None),
    FinalRequest("edit", seed=3, width=1024, height=768, init=ImageInit(PNG), mask=b"mask-bytes\x00\xff", steps=30),
    FinalRequest(
        "nested",
        seed=5,
        init=DraftInit(DraftRequest("inner", seed=2, init=DraftInit(DRAFT, 0), steps=2, strength=0.5), 0),
    ),
]


def through_json(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r.kind}-{r.prompt}")
def test_request_round_trip(request_):
    assert wire.decode_request(through_json(wire.encode_request(request_))) == request_


def test_result_round_trip_keeps_bytes_seeds_and_timings():
    result = JobResult(
        images=(GeneratedImage(PNG, 7, 768, 512), GeneratedImage(PNG[::-1], 8, 768, 512)),
        model="turbo",
        request=DRAFT,
        steps=2,
        guidance=0.0,
        timings={"queued": 0.5, "run": 1.25, "encode": 0.01, "total": 1.8},
        batch_size=3,
    )
    line = wire.parse_line(wire.result_line(result))
    assert wire.decode_result(line["result"]) == result


def test_progress_line_round_trip():
    line = wire.parse_line(wire.progress_line(5, 28, PNG))
    progress = wire.decode_progress("job-1", line)
    assert (progress.job_id, progress.step, progress.total, progress.preview) == ("job-1", 5, 28, PNG)
    assert wire.decode_progress("j", wire.parse_line(wire.progress_line(1, 2, None))).preview is None


def test_the_wire_is_plain_json_without_pickle():
    encoded = json.dumps(wire.encode_request(REQUESTS[-2]))
    assert "mask" in encoded and "pickle" not in encoded
    assert json.loads(encoded)["init"]["type"] == "image"


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "sketch", "prompt": "x", "seed": 1},
        {"kind": "draft", "prompt": "x", "seed": 1, "init": None, "evil": "__reduce__"},
        {"kind": "final", "prompt": "x", "seed": 1, "init": {"type": "image", "data": "not base64!"}},
        {"kind": "final", "prompt": "x", "seed": 1, "init": {"type": "draft", "draft": {"kind": "final"}}},
        "a string",
    ],
)
def test_malformed_requests_are_refused(bad):
    with pytest.raises(wire.WireError):
        wire.decode_request(bad)


def test_unknown_lines_and_error_kinds_are_refused():
    with pytest.raises(wire.WireError):
        wire.parse_line(b'{"type": "exec"}')
    with pytest.raises(wire.WireError):
        wire.parse_line(b"not json")
    with pytest.raises(wire.WireError):
        wire.error_line("segfault", "no")
